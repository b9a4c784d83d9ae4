package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/testutil"
)

var units = []string{"avfleet-mirror.service", "avfleet-agent.service"}

// unitFile is a parsed unit: section -> key -> values in order (a key may repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, sec := unitFile{}, ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			sec = strings.Trim(l, "[]")
			u[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || sec == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, l)
			}
			u[sec][k] = append(u[sec][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the effective value of a key that is not a list.
func (u unitFile) last(sec, key string) (string, bool) {
	v := u[sec][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// TestUnitsHardening pins the sandbox of each unit: weakening one of these
// must be a deliberate change of this table and of docs/security.md.
func TestUnitsHardening(t *testing.T) {
	common := map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"Restart":                 "on-failure",
		"PrivateDevices":          "yes",
		"ProtectKernelModules":    "yes",
		"RestrictSUIDSGID":        "yes",
		"SystemCallArchitectures": "native",
		"AmbientCapabilities":     "",
	}
	for _, tc := range []struct {
		unit string
		want map[string]string
	}{
		{"avfleet-mirror.service", map[string]string{
			"User":                   "avfleet",
			"PrivateTmp":             "yes",
			"ProtectHome":            "yes",
			"ProtectControlGroups":   "yes",
			"ProtectKernelTunables":  "yes",
			"MemoryDenyWriteExecute": "yes",
			"CapabilityBoundingSet":  "", // none at all: :6501 is not a privileged port
			"StateDirectory":         "avfleet/mirror",
			"ExecReload":             "/bin/kill -HUP $MAINPID",
		}},
		{"avfleet-agent.service", map[string]string{
			// Deliberately weaker than the mirror, each for a reason in the unit file.
			"PrivateTmp":            "no",
			"ProtectHome":           "read-only",
			"CapabilityBoundingSet": "CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_DAC_OVERRIDE CAP_FOWNER CAP_CHOWN",
			"Delegate":              "cpu memory pids",
			"KillMode":              "mixed",
			"StateDirectory":        "avfleet/agent avfleet/quarantine",
			"ExecReload":            "/bin/kill -HUP $MAINPID",
		}},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			u := parseUnit(t, filepath.Join(root, "deploy", "systemd", tc.unit))
			want := map[string]string{}
			for k, v := range common {
				want[k] = v
			}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				got, ok := u.last("Service", k)
				if !ok || got != v {
					t.Errorf("[Service] %s=%q, want %q", k, got, v)
				}
			}
			if _, ok := u.last("Service", "User"); tc.unit == "avfleet-agent.service" && ok {
				t.Error("the agent runs as root (with a bounded capability set)")
			}
			start, _ := u.last("Service", "ExecStart")
			if !strings.HasPrefix(start, "/usr/bin/avfleet ") || !strings.Contains(start, "--config /etc/avfleet/") {
				t.Errorf("ExecStart=%q, want /usr/bin/avfleet ... --config /etc/avfleet/...", start)
			}
			// The reload validates the file before the daemon sees SIGHUP.
			if r := u["Service"]["ExecReload"]; len(r) != 2 || !strings.Contains(r[0], "--check-config") {
				t.Errorf("ExecReload=%q, want --check-config, then kill -HUP", r)
			}
			if c, _ := u.last("Unit", "ConditionPathExists"); !strings.HasPrefix(c, "/etc/avfleet/") {
				t.Error("the unit must not start without its configuration (ConditionPathExists)")
			}
			if w, _ := u.last("Install", "WantedBy"); w != "multi-user.target" {
				t.Errorf("WantedBy=%q", w)
			}
		})
	}
}

// stageUnits copies the units into a temporary directory with ExecStart's
// /usr/bin/avfleet pointing at a real avfleet binary: systemd-analyze
// verify checks that the command exists and is executable.
func stageUnits(t *testing.T, extra string) string {
	t.Helper()
	bin := avfleetBin(t)
	dir := t.TempDir()
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/bin/avfleet", bin) + extra
		if err := os.WriteFile(filepath.Join(dir, u), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func verifyUnits(t *testing.T, dir string) (string, error) {
	t.Helper()
	sa := testutil.NeedCommand(t, "systemd-analyze")
	args := []string{"verify", "--man=no"}
	for _, u := range units {
		args = append(args, filepath.Join(dir, u))
	}
	// verify works without systemd as PID 1 (containers, CI): it loads the
	// units into an offline manager.
	out, errOut, err := run(t, sa, args...)
	return out + errOut, err
}

// TestUnitsVerify runs systemd-analyze verify on both units. It exits 0 on
// unknown keys and only warns, so any output at all is a failure.
func TestUnitsVerify(t *testing.T) {
	out, err := verifyUnits(t, stageUnits(t, ""))
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Control: the same check must notice a bad directive.
	out, _ = verifyUnits(t, stageUnits(t, "ProtectSytem=strict\n"))
	if !strings.Contains(out, "ProtectSytem") {
		t.Fatalf("systemd-analyze verify did not report an unknown key; output:\n%s", out)
	}
}

// TestUnitsExposure keeps systemd's own exposure score (0 = fully
// sandboxed, 10 = not at all) where it was measured: mirror 1.4, agent 3.3.
func TestUnitsExposure(t *testing.T) {
	sa := testutil.NeedCommand(t, "systemd-analyze")
	dir := stageUnits(t, "")
	for _, tc := range []struct {
		unit      string
		threshold string // exposure x10
	}{
		{"avfleet-mirror.service", "20"},
		{"avfleet-agent.service", "40"},
	} {
		out, errOut, err := run(t, sa, "security", "--offline=true", "--no-pager",
			"--threshold="+tc.threshold, filepath.Join(dir, tc.unit))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		score := lines[len(lines)-1]
		if err != nil {
			t.Errorf("%s: exposure above %s/100: %v\n%s%s", tc.unit, tc.threshold, err, score, errOut)
			continue
		}
		t.Logf("%s", score)
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "Overall exposure level") }) {
			t.Errorf("%s: no exposure level in the output:\n%s", tc.unit, out)
		}
	}
}
