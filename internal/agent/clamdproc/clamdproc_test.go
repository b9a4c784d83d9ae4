package clamdproc

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestConfLines(t *testing.T) {
	base := Options{StateDir: "/var/lib/avfleet/agent", DatabaseDir: "/var/lib/avfleet/agent/db", MaxThreads: 3}
	tests := []struct {
		name    string
		mod     func(*Options)
		want    []string
		notWant []string
	}{
		{"defaults", nil,
			[]string{"Foreground yes", "LocalSocket /var/lib/avfleet/agent/clamd.sock", "DatabaseDirectory /var/lib/avfleet/agent/db",
				"TemporaryDirectory /var/lib/avfleet/agent/clamd-tmp", "MaxThreads 3", "MaxQueue 100", "SelfCheck 0", "LogSyslog no"},
			[]string{"ConcurrentDatabaseReload no", "User clamav", "LogFile /dev/stderr"}},
		{"memory limit turns concurrent reload off", func(o *Options) { o.MemoryLimit = 512 << 20 },
			[]string{"ConcurrentDatabaseReload no"}, nil},
		{"many threads raise the queue", func(o *Options) { o.MaxThreads = 64 }, []string{"MaxThreads 64", "MaxQueue 256"}, nil},
		{"extra lines come last", func(o *Options) { o.ExtraConf = []string{"StreamMaxLength 1M"} }, []string{"StreamMaxLength 1M"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			if tt.mod != nil {
				tt.mod(&o)
			}
			lines := o.confLines()
			for _, w := range tt.want {
				if !slices.Contains(lines, w) {
					t.Errorf("clamd.conf lacks %q:\n%s", w, strings.Join(lines, "\n"))
				}
			}
			for _, w := range tt.notWant {
				if slices.Contains(lines, w) {
					t.Errorf("clamd.conf has %q", w)
				}
			}
			if len(o.ExtraConf) > 0 && lines[len(lines)-1] != o.ExtraConf[len(o.ExtraConf)-1] {
				t.Errorf("extra lines not last: %q", lines[len(lines)-1])
			}
		})
	}
}

func TestConcurrentReloadSetting(t *testing.T) {
	tests := []struct {
		mem   int64
		extra []string
		want  bool
	}{
		{0, nil, true},
		{1 << 30, nil, false},
		{0, []string{"ConcurrentDatabaseReload no"}, false},
		{1 << 30, []string{"ConcurrentDatabaseReload yes"}, true},
	}
	for _, tt := range tests {
		c, err := New(Options{StateDir: "/s", DatabaseDir: "/d", MemoryLimit: tt.mem, ExtraConf: tt.extra})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.concurrentReload(); got != tt.want {
			t.Errorf("memory %d, extra %q: concurrent = %v, want %v", tt.mem, tt.extra, got, tt.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	long := "/" + strings.Repeat("x", 100)
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"relative state dir", Options{StateDir: "state", DatabaseDir: "/db"}, "absolute"},
		{"no database dir", Options{StateDir: "/s"}, "database dir"},
		{"socket path too long", Options{StateDir: long, DatabaseDir: "/db"}, "longer than the 107"},
		{"newline in extra conf", Options{StateDir: "/s", DatabaseDir: "/db", ExtraConf: []string{"A 1\nUser clamav"}}, "newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// exitState makes a real *os.ProcessState that ended as wanted.
func exitState(t *testing.T, code int, sig syscall.Signal) *os.ProcessState {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "exit "+string(rune('0'+code)))
	if sig != 0 {
		cmd = exec.Command("/bin/sh", "-c", "kill -"+sigName(sig)+" $$")
	}
	cmd.Run()
	return cmd.ProcessState
}

func sigName(s syscall.Signal) string {
	return map[syscall.Signal]string{syscall.SIGKILL: "KILL", syscall.SIGSEGV: "SEGV", syscall.SIGTERM: "TERM"}[s]
}

func TestClassify(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Fatal("/bin/sh is needed to make exit states")
	}
	tests := []struct {
		name      string
		code      int
		sig       syscall.Signal
		requested bool
		memLimit  bool
		counter   bool
		before    uint64
		after     uint64
		wantOOM   OOMVerdict
		wantText  string
	}{
		{"exit 1", 1, 0, false, true, false, 0, 0, OOMNo, "exit code 1"},
		{"segfault", 0, syscall.SIGSEGV, false, true, false, 0, 0, OOMNo, "killed by SIGSEGV"},
		{"kill without limit", 0, syscall.SIGKILL, false, false, false, 0, 0, OOMNo, "killed by SIGKILL"},
		{"kill with limit: probable", 0, syscall.SIGKILL, false, true, false, 0, 0, OOMProbable, "probably an OOM kill"},
		{"kill with counter up: confirmed", 0, syscall.SIGKILL, false, false, true, 2, 3, OOMConfirmed, "OOM killer (cgroup oom_kill 2 -> 3)"},
		{"kill with counter unchanged: not OOM", 0, syscall.SIGKILL, false, true, true, 2, 2, OOMNo, "not an OOM kill"},
		{"our own SIGKILL", 0, syscall.SIGKILL, true, true, false, 0, 0, OOMNo, "(stopped by the agent)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Exit{Requested: tt.requested, OOMCounter: tt.counter, OOMKillsBefore: tt.before, OOMKillsAfter: tt.after}
			classify(&e, exitState(t, tt.code, tt.sig), tt.memLimit)
			if e.OOM != tt.wantOOM || !strings.Contains(e.String(), tt.wantText) {
				t.Fatalf("got OOM %v, %q; want %v, containing %q", e.OOM, e.String(), tt.wantOOM, tt.wantText)
			}
			if tt.sig != 0 && e.Code != -1 {
				t.Fatalf("signalled exit has code %d", e.Code)
			}
		})
	}
}

func TestLineLevel(t *testing.T) {
	for line, want := range map[string]string{
		"ERROR: reload_th: Database load failed: Malformed database":     "ERROR",
		"LibClamAV Error: Problem parsing database at line 1":            "ERROR",
		"WARNING: Database reload failed, keeping the previous instance": "WARN",
		"Database correctly reloaded (10 signatures)":                    "INFO",
		"Limits: Global time limit set to 120000 milliseconds.":          "DEBUG",
	} {
		if got := lineLevel(line).String(); got != want {
			t.Errorf("lineLevel(%q) = %s, want %s", line, got, want)
		}
	}
}

func TestLookPath(t *testing.T) {
	if _, err := LookPath("no-such-clamd-binary"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("LookPath of a missing binary: %v", err)
	}
	if _, err := LookPath(t.TempDir()); err == nil {
		t.Fatal("LookPath accepted a directory")
	}
	sh, err := LookPath("/bin/sh")
	if err != nil || sh != "/bin/sh" {
		t.Fatalf("LookPath(/bin/sh) = %q, %v", sh, err)
	}
	var re *ReloadError
	if errors.As(error(&ReloadError{Reason: "x"}), &re) && !strings.Contains(re.Error(), "keeps the previous") {
		t.Fatal(re.Error())
	}
}
