package limits

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	unit     = "/system.slice/avfleet-agent.service"
	agentPID = 4242 // the fake's agent; only ever written to fake files
)

// fakeDelegated is a cgroup2 mount with the agent's service cgroup as
// systemd makes it with Delegate=cpu memory pids: the controllers enabled
// for it, nothing enabled below it, the agent its only process. It returns
// the root and the service cgroup, and a /proc/self/cgroup naming it.
func fakeDelegated(t *testing.T) (root, own, self string) {
	root = t.TempDir()
	write(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n")
	write(t, filepath.Join(root, "cgroup.subtree_control"), "cpu io memory pids\n")
	write(t, filepath.Join(root, "cgroup.procs"), "1\n")
	own = filepath.Join(root, unit)
	write(t, filepath.Join(own, "cgroup.controllers"), "cpu memory pids\n")
	write(t, filepath.Join(own, "cgroup.subtree_control"), "\n")
	write(t, filepath.Join(own, "cgroup.procs"), strconv.Itoa(agentPID)+"\n")
	// What the kernel creates in the group's directory.
	g := filepath.Join(own, "clamd")
	write(t, filepath.Join(g, "cpu.stat"), "usage_usec 500\n")
	write(t, filepath.Join(g, "memory.events"), "oom_kill 1\n")
	write(t, filepath.Join(g, "memory.current"), "4096\n")
	self = filepath.Join(t.TempDir(), "cgroup")
	write(t, self, "0::"+unit+"\n")
	return root, own, self
}

// TestCgroup2Delegated: under systemd with Delegate=, the agent moves into
// <own>/clamd (its own scanning is limited with clamd), enables cpu and
// memory for its cgroup's children and limits that group, touching nothing
// outside its cgroup; Close puts everything back as it was.
func TestCgroup2Delegated(t *testing.T) {
	root, own, self := fakeDelegated(t)
	g, warn, err := New(Config{Name: "agent-node1", CPUPercent: 50, MemoryBytes: 256 << 20, Root: root,
		rmdir: os.RemoveAll, selfCgroup: self, pid: agentPID})
	if err != nil || warn != nil || g.Mode() != ModeCgroup2 {
		t.Fatalf("New: mode %v, warning %v, err %v", g.Mode(), warn, err)
	}
	group := filepath.Join(own, "clamd")
	if p := g.Paths(); len(p) != 1 || p[0] != group {
		t.Fatalf("Paths %v, want [%s]", p, group)
	}
	if !strings.Contains(g.Placement(), "delegated cgroup "+own) {
		t.Errorf("Placement %q", g.Placement())
	}
	for f, want := range map[string]string{
		filepath.Join(own, "clamd", "cgroup.procs"):   strconv.Itoa(agentPID), // the agent left own first
		filepath.Join(own, "cgroup.subtree_control"):  "+cpu +memory",
		filepath.Join(group, "cpu.max"):               "50000 100000",
		filepath.Join(group, "memory.max"):            "268435456",
		filepath.Join(root, "cgroup.subtree_control"): "cpu io memory pids", // systemd's, untouched
	} {
		if got := read(t, f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "avfleet")); !os.IsNotExist(err) {
		t.Errorf("created %s/avfleet outside the delegated subtree: %v", root, err)
	}
	if err := g.AddSelf(); err != nil { // already there
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(own, "agent")); !os.IsNotExist(err) {
		t.Errorf("made a separate leaf for the agent: %v", err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(group, "cgroup.procs")); got != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("clamd's cgroup.procs = %q", got)
	}
	if s, err := g.Stats(); err != nil || s.CPU.Microseconds() != 500 || s.OOMKills != 1 || s.MemoryBytes != 4096 {
		t.Errorf("Stats %+v, %v", s, err)
	}

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(group); !os.IsNotExist(err) {
		t.Errorf("Close left %s: %v", group, err)
	}
	if got := read(t, filepath.Join(own, "cgroup.subtree_control")); got != "-cpu -memory" {
		t.Errorf("own subtree_control after Close = %q, want the controllers New enabled turned off", got)
	}
	if got := read(t, filepath.Join(own, "cgroup.procs")); got != strconv.Itoa(agentPID) {
		t.Errorf("own cgroup.procs after Close = %q, want the agent back", got)
	}
}

// TestCgroup2NotDelegated: wherever the agent's cgroup is not its own to
// manage, the group is made at the root as before, and the agent's cgroup
// is left alone.
func TestCgroup2NotDelegated(t *testing.T) {
	for _, c := range []struct {
		name, self, why string
		tweak           func(t *testing.T, own string)
	}{
		{name: "root cgroup", self: "0::/\n", why: "the agent runs in the root cgroup"},
		{name: "v1 only", self: "4:memory:/x\n1:cpu:/x\n", why: "no cgroup v2 path"},
		{name: "outside namespace", self: "0::/../../system.slice\n", why: "no cgroup v2 path"},
		{name: "shared", self: "0::" + unit + "\n", why: "holds other processes (pid 1234)", tweak: func(t *testing.T, own string) {
			write(t, filepath.Join(own, "cgroup.procs"), strconv.Itoa(agentPID)+"\n1234\n")
		}},
		{name: "no memory controller", self: "0::" + unit + "\n", why: "does not have the cpu and memory controllers", tweak: func(t *testing.T, own string) {
			write(t, filepath.Join(own, "cgroup.controllers"), "cpu pids\n")
		}},
		{name: "missing cgroup", self: "0::/user.slice/session-1.scope\n", why: "no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, own, self := fakeDelegated(t)
			write(t, filepath.Join(root, "avfleet", "cgroup.subtree_control"), "\n") // the kernel makes it with the directory
			write(t, self, c.self)
			if c.tweak != nil {
				c.tweak(t, own)
			}
			g, warn, err := New(Config{Name: "n", CPUPercent: 100, Root: root, rmdir: os.RemoveAll, selfCgroup: self, pid: agentPID})
			if err != nil || warn != nil || g.Mode() != ModeCgroup2 {
				t.Fatalf("New: mode %v, warning %v, err %v", g.Mode(), warn, err)
			}
			defer g.Close()
			if p := g.Paths(); len(p) != 1 || p[0] != filepath.Join(root, "avfleet", "n") {
				t.Errorf("Paths %v", p)
			}
			if !strings.Contains(g.Placement(), "at the cgroup root") || !strings.Contains(g.Placement(), c.why) {
				t.Errorf("Placement %q, want the reason %q", g.Placement(), c.why)
			}
			if _, err := os.Stat(filepath.Join(own, "agent")); !os.IsNotExist(err) {
				t.Errorf("moved the agent inside a cgroup that is not its own: %v", err)
			}
			if got := read(t, filepath.Join(own, "cgroup.subtree_control")); got != "" {
				t.Errorf("own subtree_control = %q", got)
			}
		})
	}
}

// TestCgroup2DelegatedFailureUndone: a failure after the agent moved
// itself puts it back before New returns the error.
func TestCgroup2DelegatedFailureUndone(t *testing.T) {
	root, own, self := fakeDelegated(t)
	group := filepath.Join(own, "clamd")
	write(t, filepath.Join(group, "cpu.max", "x"), "a directory") // cpu.max cannot be written
	_, _, err := New(Config{Name: "n", CPUPercent: 100, Root: root, rmdir: os.RemoveAll, selfCgroup: self, pid: agentPID})
	if err == nil || !strings.Contains(err.Error(), "cpu.max") {
		t.Fatalf("New: %v, want the cpu.max failure", err)
	}
	if _, err := os.Stat(group); !os.IsNotExist(err) {
		t.Errorf("left %s: %v", group, err)
	}
	if got := read(t, filepath.Join(own, "cgroup.subtree_control")); got != "-cpu -memory" {
		t.Errorf("own subtree_control = %q", got)
	}
	if got := read(t, filepath.Join(own, "cgroup.procs")); got != strconv.Itoa(agentPID) {
		t.Errorf("own cgroup.procs = %q, want the agent back", got)
	}
}

func TestParseSelfCgroup(t *testing.T) {
	for in, want := range map[string]string{
		"0::/\n": "/",
		"12:pids:/user.slice\n1:name=systemd:/user.slice\n0::/system.slice/avfleet-agent.service\n": "/system.slice/avfleet-agent.service",
		"0::/system.slice/avfleet-agent.service/agent":                                              "/system.slice/avfleet-agent.service/agent",
		"0::/../..\n":      "",
		"0::/a/../b\n":     "",
		"0::relative\n":    "",
		"0::/a//b\n":       "",
		"4:memory:/x\n":    "",
		"":                 "",
		"0::/a/b/\n":       "",
		"0::/a\n0::/b\n":   "/a",
		"0::/with space\n": "/with space",
	} {
		if got := parseSelfCgroup([]byte(in)); got != want {
			t.Errorf("parseSelfCgroup(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseSelfCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/avfleet-agent.service\n"))
	f.Add([]byte("12:pids:/x\n0::/\n"))
	f.Add([]byte("0::/../x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := parseSelfCgroup(b)
		if p == "" {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "..") && filepath.Clean(p) != p {
			t.Fatalf("parseSelfCgroup(%q) = %q", b, p)
		}
		// Joined to the mount root it never leaves it.
		if j := filepath.Join("/sys/fs/cgroup", p); j != "/sys/fs/cgroup" && !strings.HasPrefix(j, "/sys/fs/cgroup/") {
			t.Fatalf("parseSelfCgroup(%q) = %q leaves the root: %s", b, p, j)
		}
	})
}
