package deploy

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestDebVersion: git describe's output becomes a valid Debian version that
// sorts the way the releases do.
func TestDebVersion(t *testing.T) {
	script := filepath.Join(root, "deploy", "debian", "deb-version.sh")
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-rc.1-4-gabc1234", "1.2.3~rc.1+4.gabc1234"},
		{"abc1234", "0.0.0~git.abc1234"},
		{"abc1234-dirty", "0.0.0~git.abc1234.dirty"},
		{"dev", "0.0.0~dev"},
		{testVersion, "0.0.0~deploytest"},
	} {
		got := strings.TrimSpace(mustRun(t, script, tc.in))
		if got != tc.want {
			t.Errorf("deb-version.sh %s = %s, want %s", tc.in, got, tc.want)
		}
	}
	// dpkg's own ordering: each version is older than the next.
	dpkg := testutil.NeedCommand(t, "dpkg")
	order := []string{"0.0.0~dev", "0.0.0~git.abc1234", "1.2.3~rc.1", "1.2.3~rc.1+4.gabc1234", "1.2.3", "1.2.3+4.gabc1234", "1.2.3+4.gabc1234.dirty", "1.2.4~rc.1"}
	for i := 0; i+1 < len(order); i++ {
		if _, _, err := run(t, dpkg, "--compare-versions", order[i], "lt", order[i+1]); err != nil {
			t.Errorf("dpkg: %s is not older than %s", order[i], order[i+1])
		}
	}
}

var (
	debOnce sync.Once
	debPath string
	debErr  error
)

// buildDeb runs the same script as `make deb`, once for all tests here.
func buildDeb(t *testing.T, bin, version string) string {
	t.Helper()
	debOnce.Do(func() {
		var out string
		if out, debErr = os.MkdirTemp("", "avfleet-deb-test-"); debErr != nil {
			return
		}
		tempDirs = append(tempDirs, out)
		start := time.Now()
		var stdout, stderr string
		stdout, stderr, debErr = run(t, filepath.Join(root, "deploy", "debian", "build-deb.sh"), bin, version, out)
		if debErr != nil {
			debErr = fmt.Errorf("build-deb.sh: %w\n%s", debErr, stderr)
			return
		}
		debPath = strings.TrimSpace(stdout)
		t.Logf("built %s in %v", filepath.Base(debPath), time.Since(start).Round(time.Millisecond))
		debver, _, err := run(t, filepath.Join(root, "deploy", "debian", "deb-version.sh"), version)
		if err != nil {
			debErr = fmt.Errorf("deb-version.sh %s: %w", version, err)
			return
		}
		debver = strings.TrimSpace(debver)
		if want := filepath.Join(out, fmt.Sprintf("avfleet_%s_%s.deb", debver, runtime.GOARCH)); debPath != want {
			debErr = fmt.Errorf("package at %s, want %s", debPath, want)
		}
	})
	if debErr != nil {
		t.Fatal(debErr)
	}
	return debPath
}

// TestDebContents inspects the package without installing it.
func TestDebContents(t *testing.T) {
	testutil.NeedCommand(t, "dpkg-deb")
	bin := avfleetBin(t)
	deb := buildDeb(t, bin, binVersion(t, bin))

	if dep := strings.TrimSpace(mustRun(t, "dpkg-deb", "-f", deb, "Depends")); !strings.Contains(dep, "clamav-daemon") {
		t.Errorf("Depends: %q lacks clamav-daemon", dep)
	}
	list := mustRun(t, "dpkg-deb", "-c", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/avfleet$",
		"-rw-r--r-- root/root .* ./usr/lib/systemd/system/avfleet-mirror.service$",
		"-rw-r--r-- root/root .* ./usr/lib/systemd/system/avfleet-agent.service$",
		"-rw-r--r-- root/root .* ./etc/avfleet/mirror.yaml$",
		"-rw-r--r-- root/root .* ./etc/avfleet/agent.yaml$",
		"./usr/share/doc/avfleet/security.md$",
	} {
		if !matchLine(list, want) {
			t.Errorf("package lacks %s; contents:\n%s", want, list)
		}
	}
	ctrl := t.TempDir()
	mustRun(t, "dpkg-deb", "-e", deb, ctrl)
	conf, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	// Configuration files: dpkg keeps the operator's edits on upgrade.
	if got := strings.Fields(string(conf)); !slices.Equal(got, []string{"/etc/avfleet/agent.yaml", "/etc/avfleet/mirror.yaml"}) {
		t.Errorf("conffiles %v", got)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		b, err := os.ReadFile(filepath.Join(ctrl, s))
		if err != nil {
			t.Fatal(err)
		}
		// The package starts nothing: services need certificates first.
		for _, bad := range []string{"systemctl start", "systemctl enable", "--now"} {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, bad) && !strings.Contains(l, "then:") && !strings.Contains(l, "disable --now") {
					t.Errorf("%s: %q would start a service", s, l)
				}
			}
		}
	}
}

func matchLine(text, re string) bool {
	rx := regexp.MustCompile(re)
	for _, l := range strings.Split(text, "\n") {
		if rx.MatchString(l) {
			return true
		}
	}
	return false
}

// TestDebInstall installs the package on this machine with dpkg, runs the
// installed binary and checks the configuration examples the way an
// operator would, then purges it and removes the account it made, leaving
// the machine as it was. CI runs as root and runs it.
func TestDebInstall(t *testing.T) {
	testutil.NeedRoot(t)
	dpkg := testutil.NeedCommand(t, "dpkg")
	if st, _, _ := run(t, "dpkg-query", "-W", "-f=${Status}", "avfleet"); strings.Contains(st, "installed") {
		testutil.Skip(t, "an avfleet package is already installed on this machine ("+st+"); this test installs and purges its own and leaves that one alone")
	}
	if st, _, _ := run(t, "dpkg-query", "-W", "-f=${Status}", "clamav-daemon"); !strings.HasSuffix(st, "ok installed") {
		testutil.Skip(t, "clamav-daemon, the package's dependency, is not installed (make deps)")
	}
	bin := avfleetBin(t)
	version := binVersion(t, bin)
	deb := buildDeb(t, bin, version)

	_, userErr := user.Lookup("avfleet")
	_, groupErr := user.LookupGroup("avfleet")
	_, varLibErr := os.Stat("/var/lib/avfleet")
	t.Cleanup(func() {
		// Files the test added are not the package's: remove them so that
		// purge can remove the directories.
		for _, f := range []string{"ca.crt", "server.crt", "server.key", "node.crt", "node.key"} {
			os.Remove(filepath.Join("/etc/avfleet/tls", f))
		}
		if out, errOut, err := run(t, dpkg, "--purge", "avfleet"); err != nil {
			t.Errorf("dpkg --purge avfleet: %v\n%s%s", err, out, errOut)
		}
		if userErr != nil {
			if out, errOut, err := run(t, "userdel", "avfleet"); err != nil {
				t.Errorf("userdel avfleet: %v\n%s%s", err, out, errOut)
			}
		}
		if _, err := user.LookupGroup("avfleet"); groupErr != nil && err == nil {
			if out, errOut, err := run(t, "groupdel", "avfleet"); err != nil {
				t.Errorf("groupdel avfleet: %v\n%s%s", err, out, errOut)
			}
		}
		for _, p := range []string{"/usr/bin/avfleet", "/etc/avfleet", "/usr/lib/systemd/system/avfleet-agent.service"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s is still there after purge", p)
			}
		}
		if _, err := os.Stat("/var/lib/avfleet"); varLibErr != nil && err == nil {
			t.Errorf("/var/lib/avfleet is still there after purge")
		}
	})

	start := time.Now()
	out := mustRun(t, dpkg, "--install", deb)
	t.Logf("dpkg --install: %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "no service was started") {
		t.Errorf("postinst did not say what to do next:\n%s", out)
	}
	if got := binVersion(t, "/usr/bin/avfleet"); got != version {
		t.Errorf("installed avfleet reports %s, built %s", got, version)
	}

	for _, d := range []struct {
		path  string
		mode  os.FileMode
		owner string
		group string
	}{
		{"/var/lib/avfleet", 0o755, "root", "root"},
		{"/var/lib/avfleet/mirror", 0o750, "avfleet", "avfleet"},
		{"/var/lib/avfleet/agent", 0o700, "root", "root"},
		{"/var/lib/avfleet/quarantine", 0o700, "root", "root"},
		{"/etc/avfleet/tls", 0o750, "root", "avfleet"},
	} {
		checkOwner(t, d.path, d.mode, d.owner, d.group)
	}

	// The installed units, with the installed binary.
	if out, errOut, err := run(t, "systemd-analyze", "verify", "--man=no",
		"/usr/lib/systemd/system/avfleet-mirror.service", "/usr/lib/systemd/system/avfleet-agent.service"); err != nil || out+errOut != "" {
		t.Errorf("systemd-analyze verify of the installed units: %v\n%s%s", err, out, errOut)
	}

	// What the operator does next: certificates into /etc/avfleet/tls, with
	// the permissions the postinst message names, then --check-config.
	host, _ := os.Hostname()
	pki := t.TempDir()
	mustRun(t, "/usr/bin/avfleet", "certs", "init", "--dir", pki, "--host", "localhost", "--client", host)
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
		group    string
	}{
		{"ca.crt", "ca.crt", 0o644, "root"},
		{"server.crt", "server.crt", 0o644, "root"},
		{"server.key", "server.key", 0o640, "avfleet"},
		{host + ".crt", "node.crt", 0o644, "root"},
		{host + ".key", "node.key", 0o600, "root"},
	} {
		dst := filepath.Join("/etc/avfleet/tls", f.to)
		mustRun(t, "install", "-m", fmt.Sprintf("%o", f.mode), "-o", "root", "-g", f.group, filepath.Join(pki, f.from), dst)
	}
	// The mirror runs as avfleet: check as avfleet, which also proves the
	// key's group permission is what makes it readable.
	mustRun(t, "runuser", "-u", "avfleet", "--", "/usr/bin/avfleet", "mirror", "serve", "--config", "/etc/avfleet/mirror.yaml", "--check-config")
	if err := os.Chmod("/etc/avfleet/tls/server.key", 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "runuser", "-u", "avfleet", "--", "/usr/bin/avfleet", "mirror", "serve", "--config", "/etc/avfleet/mirror.yaml", "--check-config"); err == nil {
		t.Error("mirror --check-config as avfleet passed with server.key 0600 root: the permission check proves nothing")
	}

	// The agent's configuration names node.crt, whose CN is this host's
	// name: node_name "" means the hostname.
	if _, _, err := run(t, "/usr/bin/avfleet", "agent", "run", "--help"); err != nil {
		// Until `avfleet agent run` is in the binary: load the file as it will.
		t.Logf("avfleet agent run is not in this binary; checking /etc/avfleet/agent.yaml with config.LoadAgent")
		if _, err := config.LoadAgent("/etc/avfleet/agent.yaml"); err != nil {
			t.Error(err)
		}
		return
	}
	mustRun(t, "/usr/bin/avfleet", "agent", "run", "--config", "/etc/avfleet/agent.yaml", "--check-config")
}

func checkOwner(t *testing.T, path string, mode os.FileMode, owner, group string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	sys := st.Sys().(*syscall.Stat_t)
	u, _ := user.LookupId(fmt.Sprint(sys.Uid))
	g, _ := user.LookupGroupId(fmt.Sprint(sys.Gid))
	if st.Mode().Perm() != mode || u == nil || u.Username != owner || g == nil || g.Name != group {
		t.Errorf("%s: mode %o uid %d gid %d, want %o %s:%s", path, st.Mode().Perm(), sys.Uid, sys.Gid, mode, owner, group)
	}
}
