package limits

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avfleet/avfleet/internal/testutil"
)

// TestMain lets the test binary double as the child processes of the
// tests: AVFLEET_LIMITS_HELPER=burn spends 5 ms of CPU per byte read from
// stdin and answers each with a byte; AVFLEET_LIMITS_HELPER=alloc waits for a line on stdin, then
// allocates and touches memory until killed.
func TestMain(m *testing.M) {
	switch os.Getenv("AVFLEET_LIMITS_HELPER") {
	case "burn": // for each byte on stdin, 5 ms of CPU, then a byte back
		b := make([]byte, 1)
		for {
			if _, err := os.Stdin.Read(b); err != nil {
				os.Exit(0)
			}
			for t := time.Now(); time.Since(t) < 5*time.Millisecond; {
			}
			os.Stdout.Write(b)
		}
	case "alloc":
		io.ReadFull(os.Stdin, make([]byte, 1))
		var keep [][]byte
		for i := 0; i < 64; i++ { // 1 GiB in 16 MiB steps, each page touched
			b := make([]byte, 16<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println(len(keep))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeV2 lays out a temp dir like a cgroup2 mount; the group's own
// directory is pre-made with the statistics files the kernel would create.
func fakeV2(t *testing.T, controllers, name string) string {
	root := t.TempDir()
	write(t, filepath.Join(root, "cgroup.controllers"), controllers+"\n")
	write(t, filepath.Join(root, "cgroup.subtree_control"), "\n")
	write(t, filepath.Join(root, "cgroup.procs"), "")
	leaf := filepath.Join(root, "avfleet", name)
	write(t, filepath.Join(root, "avfleet", "cgroup.subtree_control"), "cpu\n")
	write(t, filepath.Join(leaf, "cpu.stat"), "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n")
	write(t, filepath.Join(leaf, "memory.events"), "low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\n")
	write(t, filepath.Join(leaf, "memory.current"), "8388608\n")
	return root
}

// inRoot is a /proc/self/cgroup of a process in the root cgroup (or a
// cgroup namespace's root): the fake tests of the root-level layout use it
// whatever cgroup the test runs in.
func inRoot(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "cgroup")
	write(t, p, "0::/\n")
	return p
}

func TestCgroup2Fake(t *testing.T) {
	root := fakeV2(t, "cpuset cpu io memory hugetlb pids rdma misc", "node-1")
	g, warn, err := New(Config{Name: "node-1", CPUPercent: 250, MemoryBytes: 1 << 30, Root: root, rmdir: os.RemoveAll, selfCgroup: inRoot(t)})
	if err != nil || warn != nil {
		t.Fatalf("New: %v, warning %v", err, warn)
	}
	if g.Mode() != ModeCgroup2 {
		t.Fatalf("mode %s", g.Mode())
	}
	leaf := filepath.Join(root, "avfleet", "node-1")
	for f, want := range map[string]string{
		filepath.Join(root, "cgroup.subtree_control"):            "+cpu +memory",
		filepath.Join(root, "avfleet", "cgroup.subtree_control"): "+memory", // cpu was already on
		filepath.Join(leaf, "cpu.max"):                           "250000 100000",
		filepath.Join(leaf, "memory.max"):                        "1073741824",
	} {
		if got := read(t, f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if p := g.Paths(); len(p) != 1 || p[0] != leaf {
		t.Errorf("Paths %v", p)
	}
	// A child in the fake group: the fake kernel is a file, so this only
	// shows where the pid goes.
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(leaf, "cgroup.procs")); got != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("cgroup.procs = %q", got)
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU != 1234567*time.Microsecond || s.OOMKills != 2 || s.MemoryBytes != 8<<20 {
		t.Errorf("Stats %+v", s)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leaf); !os.IsNotExist(err) {
		t.Errorf("Close left %s: %v", leaf, err)
	}
	// The pid still in the group was moved back to where it came from
	// (the fake has no such cgroup, so the hierarchy root).
	if got := read(t, filepath.Join(root, "cgroup.procs")); got != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("root cgroup.procs after Close = %q", got)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := g.Add(1); err == nil {
		t.Error("Add after Close succeeded")
	}
}

// TestCgroup2FakeAddSelf: at the cgroup root, AddSelf moves the agent
// into the limited group beside clamd; Close moves it back out (the fake
// pid has no /proc entry to say where from, so to the hierarchy's root).
func TestCgroup2FakeAddSelf(t *testing.T) {
	root := fakeV2(t, "cpu memory", "n")
	const self = 4242
	g, warn, err := New(Config{Name: "n", CPUPercent: 50, Root: root, rmdir: os.RemoveAll, selfCgroup: inRoot(t), pid: self})
	if err != nil || warn != nil || g.Mode() != ModeCgroup2 {
		t.Fatalf("New: mode %s, %v, warning %v", g.Mode(), err, warn)
	}
	leaf := filepath.Join(root, "avfleet", "n")
	if err := g.AddSelf(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(leaf, "cgroup.procs")); got != strconv.Itoa(self) {
		t.Errorf("group cgroup.procs after AddSelf = %q, want the agent's pid", got)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(root, "cgroup.procs")); got != strconv.Itoa(self) {
		t.Errorf("root cgroup.procs after Close = %q, want the agent moved back", got)
	}
	if _, err := os.Stat(leaf); !os.IsNotExist(err) {
		t.Errorf("Close left %s: %v", leaf, err)
	}
}

func TestCgroup2FakeUnlimited(t *testing.T) {
	root := fakeV2(t, "cpu memory", "n")
	g, warn, err := New(Config{Name: "n", Root: root, rmdir: os.RemoveAll, selfCgroup: inRoot(t)})
	if err != nil || warn != nil || g.Mode() != ModeCgroup2 {
		t.Fatalf("New: %v %v %v", g, warn, err)
	}
	defer g.Close()
	leaf := filepath.Join(root, "avfleet", "n")
	if got := read(t, filepath.Join(leaf, "cpu.max")); got != "max 100000" {
		t.Errorf("cpu.max %q", got)
	}
	if got := read(t, filepath.Join(leaf, "memory.max")); got != "max" {
		t.Errorf("memory.max %q", got)
	}
}

// fakeV1 lays out cpu, cpuacct and memory hierarchies; with comount, cpu
// and cpuacct are one hierarchy reached through two symlinks, as on most
// distributions.
func fakeV1(t *testing.T, name string, comount bool) string {
	root := t.TempDir()
	cpu, acct := filepath.Join(root, "cpu"), filepath.Join(root, "cpuacct")
	if comount {
		real := filepath.Join(root, "cpu,cpuacct")
		os.Mkdir(real, 0o755)
		os.Symlink("cpu,cpuacct", cpu)
		os.Symlink("cpu,cpuacct", acct)
		cpu, acct = real, real
	}
	write(t, filepath.Join(cpu, "cpu.cfs_quota_us"), "-1\n")
	write(t, filepath.Join(acct, "cpuacct.usage"), "0\n")
	write(t, filepath.Join(root, "memory", "memory.limit_in_bytes"), "9223372036854771712\n")
	write(t, filepath.Join(cpu, "avfleet", name, "cpu.cfs_quota_us"), "-1\n")
	write(t, filepath.Join(acct, "avfleet", name, "cpuacct.usage"), "5000000000\n")
	write(t, filepath.Join(root, "memory", "avfleet", name, "memory.limit_in_bytes"), "9223372036854771712\n")
	write(t, filepath.Join(root, "memory", "avfleet", name, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
	write(t, filepath.Join(root, "memory", "avfleet", name, "memory.usage_in_bytes"), "4096\n")
	return root
}

func TestCgroup1Fake(t *testing.T) {
	for _, comount := range []bool{false, true} {
		t.Run(fmt.Sprintf("comount=%v", comount), func(t *testing.T) {
			root := fakeV1(t, "g", comount)
			g, warn, err := New(Config{Name: "g", CPUPercent: 20, MemoryBytes: 64 << 20, Root: root, rmdir: os.RemoveAll})
			if err != nil || warn != nil {
				t.Fatalf("New: %v, warning %v", err, warn)
			}
			if g.Mode() != ModeCgroup1 {
				t.Fatalf("mode %s", g.Mode())
			}
			cpu := filepath.Join(root, "cpu", "avfleet", "g")
			mem := filepath.Join(root, "memory", "avfleet", "g")
			if got := read(t, filepath.Join(cpu, "cpu.cfs_quota_us")); got != "20000" {
				t.Errorf("cfs_quota_us %q", got)
			}
			if got := read(t, filepath.Join(cpu, "cpu.cfs_period_us")); got != "100000" {
				t.Errorf("cfs_period_us %q", got)
			}
			if got := read(t, filepath.Join(mem, "memory.limit_in_bytes")); got != "67108864" {
				t.Errorf("limit_in_bytes %q", got)
			}
			want := 3
			if comount {
				want = 2
			}
			if len(g.Paths()) != want {
				t.Errorf("Paths %v, want %d", g.Paths(), want)
			}
			s, err := g.Stats()
			if err != nil || s.CPU != 5*time.Second || s.OOMKills != 4 || s.MemoryBytes != 4096 {
				t.Errorf("Stats %+v %v", s, err)
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{cpu, mem} {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("Close left %s", d)
				}
			}
		})
	}
}

func TestFallbackWithoutCgroups(t *testing.T) {
	// v2 without the cpu controller (like this machine's empty unified
	// hierarchy) and no v1: nice and idle I/O, with a warning.
	root := t.TempDir()
	write(t, filepath.Join(root, "cgroup.controllers"), "memory pids\n")
	g, warn, err := New(Config{Name: "n", CPUPercent: 50, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Mode() != ModeNice || warn == nil {
		t.Fatalf("mode %s warning %v", g.Mode(), warn)
	}
	for _, want := range []string{"lacks the cpu controller", "no cgroup v1 cpu hierarchy", "NOT enforced", "nice 10"} {
		if !strings.Contains(warn.Error(), want) {
			t.Errorf("warning %q lacks %q", warn, want)
		}
	}
	if _, err := g.Stats(); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("Stats: %v", err)
	}
	checkDeprioritized(t, g)

	// Nothing to limit: no warning, nothing done.
	g2, warn, err := New(Config{Name: "n", Root: root})
	if err != nil || warn != nil || g2.Mode() != ModeNone {
		t.Fatalf("unlimited: mode %v warning %v err %v", g2.Mode(), warn, err)
	}
	if err := g2.Add(os.Getpid()); err != nil {
		t.Error(err)
	}
}

// checkDeprioritized starts a multi-threaded child, adds it to g and checks
// that every thread got nice 10 and the idle I/O class.
func checkDeprioritized(t *testing.T, g *Group) {
	t.Helper()
	// sleep is single-threaded; the test binary itself has several threads.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AVFLEET_LIMITS_HELPER=alloc")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait(); stdin.Close() }()
	time.Sleep(100 * time.Millisecond) // let the Go runtime start its threads
	pid := cmd.Process.Pid
	if err := g.Add(pid); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) < 2 {
		t.Logf("only %d thread(s)", len(tasks))
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		n, err := threadNice(pid, tid)
		if err != nil || n != 10 {
			t.Errorf("thread %d: nice %d (%v), want 10", tid, n, err)
		}
		prio, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
		if e != 0 || prio>>ioprioClassShift != ioprioClassIdle {
			t.Errorf("thread %d: I/O priority %#x (%v), want the idle class", tid, prio, e)
		}
	}
}

func TestFallbackReadOnly(t *testing.T) {
	testutil.NeedRoot(t)
	// A cgroup2 layout on a read-only file system, as /sys/fs/cgroup is in
	// an unprivileged container.
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		testutil.Skip(t, "cannot mount a tmpfs: "+err.Error())
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	write(t, filepath.Join(dir, "cgroup.controllers"), "cpu memory\n")
	write(t, filepath.Join(dir, "cgroup.subtree_control"), "cpu memory\n")
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	g, warn, err := New(Config{Name: "n", MemoryBytes: 64 << 20, Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Mode() != ModeNice || warn == nil || !strings.Contains(warn.Error(), "read-only file system") {
		t.Fatalf("mode %s, warning %v", g.Mode(), warn)
	}
	t.Log(warn)
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Name: ""}, {Name: "../x"}, {Name: "a/b"}, {Name: "ok", CPUPercent: -1}, {Name: "ok", MemoryBytes: -1},
	} {
		if _, _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

func TestAccessError(t *testing.T) {
	for err, want := range map[error]bool{
		&os.PathError{Op: "mkdir", Path: "x", Err: syscall.EROFS}:  true,
		&os.PathError{Op: "mkdir", Path: "x", Err: syscall.EACCES}: true,
		&os.PathError{Op: "write", Path: "x", Err: syscall.EPERM}:  true,
		&os.PathError{Op: "write", Path: "x", Err: syscall.EBUSY}:  true,
		&os.PathError{Op: "write", Path: "x", Err: syscall.EINVAL}: false,
		errors.New("other"): false,
	} {
		if got := accessError(fmt.Errorf("wrapped: %w", err)); got != want {
			t.Errorf("accessError(%v) = %v", err, got)
		}
	}
}

func TestStatField(t *testing.T) {
	line := []byte("1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 30 10 1 0 100 0 0")
	if n, err := statField(line, 19); err != nil || n != 10 {
		t.Errorf("nice %d %v", n, err)
	}
	if n, err := statField(line, 14); err != nil || n != 7 {
		t.Errorf("utime %d %v", n, err)
	}
	if _, err := statField([]byte("garbage"), 19); err == nil {
		t.Error("garbage parsed")
	}
}

// cpuTicks is a process's user+system CPU time in clock ticks (USER_HZ=100).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	u, err1 := statField(b, 14)
	s, err2 := statField(b, 15)
	if err1 != nil || err2 != nil {
		t.Fatalf("stat: %v %v", err1, err2)
	}
	return u + s
}

func busyLoop(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestCgroup1Real creates a real cgroup on this host's v1 hierarchies and
// measures that a busy loop in it gets no more than its 20% of a core.
func TestCgroup1Real(t *testing.T) {
	testutil.NeedRoot(t)
	if ok, reason := v2Usable(DefaultRoot); ok {
		testutil.Skip(t, "this host has cgroup v2 with controllers; the v1 test needs v1 (v2 is tested on a fake)")
	} else if ok, reason2 := v1Usable(DefaultRoot); !ok {
		testutil.Skip(t, reason+"; "+reason2)
	}
	name := fmt.Sprintf("test-%d", os.Getpid())
	const mem = 64 << 20
	g, warn, err := New(Config{Name: name, CPUPercent: 20, MemoryBytes: mem})
	if err != nil || warn != nil {
		t.Fatalf("New: %v, warning %v", err, warn)
	}
	t.Cleanup(func() { g.Close() })
	if g.Mode() != ModeCgroup1 {
		t.Fatalf("mode %s", g.Mode())
	}
	cpuDir := filepath.Join(DefaultRoot, "cpu", "avfleet", name)
	memDir := filepath.Join(DefaultRoot, "memory", "avfleet", name)
	if got := read(t, filepath.Join(cpuDir, "cpu.cfs_quota_us")); got != "20000" {
		t.Errorf("cpu.cfs_quota_us = %s", got)
	}
	if got := read(t, filepath.Join(cpuDir, "cpu.cfs_period_us")); got != "100000" {
		t.Errorf("cpu.cfs_period_us = %s", got)
	}
	if got := read(t, filepath.Join(memDir, "memory.limit_in_bytes")); got != strconv.Itoa(mem) {
		t.Errorf("memory.limit_in_bytes = %s", got)
	}

	limited, free := busyLoop(t), busyLoop(t)
	if err := g.Add(limited.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Paths() {
		if got := read(t, filepath.Join(d, "cgroup.procs")); got != strconv.Itoa(limited.Process.Pid) {
			t.Errorf("%s/cgroup.procs = %q", d, got)
		}
	}
	s0, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	l0, f0, t0 := cpuTicks(t, limited.Process.Pid), cpuTicks(t, free.Process.Pid), time.Now()
	time.Sleep(3 * time.Second)
	l1, f1, el := cpuTicks(t, limited.Process.Pid), cpuTicks(t, free.Process.Pid), time.Since(t0)
	s1, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	limitedPct := float64(l1-l0) / el.Seconds() // a tick is 10 ms = 1% of a core-second
	freePct := float64(f1-f0) / el.Seconds()
	groupPct := 100 * (s1.CPU - s0.CPU).Seconds() / el.Seconds()
	t.Logf("over %v: limited %.1f%% of a core (cgroup says %.1f%%), unlimited %.1f%%", el.Round(time.Millisecond), limitedPct, groupPct, freePct)
	if limitedPct > 25 || groupPct > 25 {
		t.Errorf("busy loop at cpu_percent 20 used %.1f%% (cgroup: %.1f%%) of a core, want <= 25%%", limitedPct, groupPct)
	}
	if groupPct < 2 {
		t.Errorf("the group used %.1f%%: did the busy loop run in it at all?", groupPct)
	}
	if freePct <= limitedPct {
		t.Errorf("the unlimited loop got %.1f%%, no more than the limited one's %.1f%%: the measurement shows nothing", freePct, limitedPct)
	}

	limited.Process.Kill()
	limited.Wait()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{cpuDir, memDir} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("Close left %s", d)
		}
	}
}

// TestCgroup1RealAddSelf: the agent (here the test process) joins the cpu
// and memory groups clamd is limited in, and Close puts it back where it
// was, so the groups can be removed.
func TestCgroup1RealAddSelf(t *testing.T) {
	testutil.NeedRoot(t)
	if ok, reason := v2Usable(DefaultRoot); ok {
		testutil.Skip(t, "this host has cgroup v2 with controllers; the v1 test needs v1 (v2 is tested on a fake)")
	} else if ok, reason2 := v1Usable(DefaultRoot); !ok {
		testutil.Skip(t, reason+"; "+reason2)
	}
	before := read(t, "/proc/self/cgroup")
	name := fmt.Sprintf("test-self-%d", os.Getpid())
	g, warn, err := New(Config{Name: name, CPUPercent: 100, MemoryBytes: 1 << 30})
	if err != nil || warn != nil || g.Mode() != ModeCgroup1 {
		t.Fatalf("New: mode %s, %v, warning %v", g.Mode(), err, warn)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.AddSelf(); err != nil {
		t.Fatal(err)
	}
	now := read(t, "/proc/self/cgroup")
	for _, ctrl := range []string{"cpu", "memory"} {
		want := "/avfleet/" + name
		found := false
		for _, line := range strings.Split(now, "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), ctrl) {
				found = parts[2] == want
			}
		}
		if !found {
			t.Errorf("after AddSelf the %s hierarchy does not put this process in %s:\n%s", ctrl, want, now)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if after := read(t, "/proc/self/cgroup"); after != before {
		t.Errorf("after Close /proc/self/cgroup =\n%s\nwant as before:\n%s", after, before)
	}
	for _, d := range g.Paths() {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("Close left %s", d)
		}
	}
}

// TestCgroup1RealOOM lets a child exceed a 32 MiB limit and checks that the
// kernel killed it and Stats counted the kill.
func TestCgroup1RealOOM(t *testing.T) {
	testutil.NeedRoot(t)
	if ok, _ := v2Usable(DefaultRoot); ok {
		testutil.Skip(t, "this host has cgroup v2 with controllers")
	} else if ok, reason := v1Usable(DefaultRoot); !ok {
		testutil.Skip(t, reason)
	}
	g, warn, err := New(Config{Name: fmt.Sprintf("test-oom-%d", os.Getpid()), MemoryBytes: 32 << 20})
	if err != nil || warn != nil {
		t.Fatalf("New: %v, warning %v", err, warn)
	}
	t.Cleanup(func() { g.Close() })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AVFLEET_LIMITS_HELPER=alloc")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("go"))
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the child neither finished nor was killed")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL", err)
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.OOMKills < 1 {
		t.Errorf("Stats %+v: no OOM kill counted", s)
	}
	t.Logf("stats after the kill: %+v", s)
}
