package clamdproc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

// testCgroup creates a cgroup for one test under the hierarchy that has the
// memory controller (v1 memory mount, or v2 with memory enabled at its root)
// and removes it afterwards. It returns the directory and the file that sets
// its memory limit.
func testCgroup(t *testing.T, needMemory bool) (dir, limitFile string, v2 bool) {
	t.Helper()
	testutil.NeedRoot(t)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		testutil.Skip(t, "no /proc/self/mountinfo: "+err.Error())
	}
	v1Mem, v2Mount := cgroupMounts(mi)
	name := fmt.Sprintf("avfleet-clamdproc-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	switch {
	case needMemory && v1Mem != "":
		dir, limitFile = filepath.Join(v1Mem, name), "memory.limit_in_bytes"
	case v2Mount != "":
		ctrl, _ := os.ReadFile(filepath.Join(v2Mount, "cgroup.subtree_control"))
		if needMemory && !hasController(strings.ReplaceAll(strings.TrimSpace(string(ctrl)), " ", ","), "memory") {
			testutil.Skip(t, "cgroup v2 at "+v2Mount+" has no memory controller enabled for its children")
		}
		dir, limitFile, v2 = filepath.Join(v2Mount, name), "memory.max", true
	default:
		testutil.Skip(t, "no writable cgroup hierarchy found")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		testutil.Skip(t, "cannot create a test cgroup: "+err.Error())
	}
	t.Cleanup(func() {
		// Processes left (none expected once the supervisor stopped) block rmdir.
		for i := 0; i < 50; i++ {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("could not remove test cgroup %s", dir)
	})
	return dir, filepath.Join(dir, limitFile), v2
}

func joinCgroup(dir string) func(int) error {
	return func(pid int) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
}

func cgroupOf(t *testing.T, pid int) string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// TestManagedRealOOMKill runs clamd under a 4 MiB memory limit: loading even
// test-6.cvd needs more (about 9 MiB), so the kernel OOM-kills it, and the
// supervisor must say so for sure from the cgroup's own counter.
func TestManagedRealOOMKill(t *testing.T) {
	dir, limit, _ := testCgroup(t, true)
	if err := os.WriteFile(limit, []byte("4194304"), 0o644); err != nil {
		testutil.Skip(t, "cannot set a memory limit: "+err.Error())
	}
	m := startManaged(t, func(o *Options) {
		o.MemoryLimit = 4 << 20
		o.OnStart = joinCgroup(dir)
		o.MinBackoff = 5 * time.Second // one exit is enough
	})
	ctx := ctxT(t, 10*time.Second)
	for m.events.last(EventExited) == nil {
		if ctx.Err() != nil {
			t.Fatalf("clamd was not OOM-killed within 10s: %+v", m.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	e := m.events.last(EventExited).Exit
	if e.Signal != "SIGKILL" || e.OOM != OOMConfirmed || !e.OOMCounter || e.OOMKillsAfter <= e.OOMKillsBefore {
		t.Fatalf("exit %+v: %s", e, e)
	}
	t.Logf("reported: %s", e)
}

// TestManagedCgroupDir starts clamd directly inside a cgroup v2 directory
// (CLONE_INTO_CGROUP): no moment outside it.
func TestManagedCgroupDir(t *testing.T) {
	dir, _, v2 := testCgroup(t, false)
	if !v2 {
		testutil.Skip(t, "no cgroup v2 hierarchy")
	}
	placed := 0
	m := startManaged(t, func(o *Options) {
		o.CgroupDir = dir
		o.OnStart = func(int) error { placed++; return nil }
	})
	pid := m.ready(t)
	want := "0::/" + filepath.Base(dir) + "\n"
	if cg := cgroupOf(t, pid); !strings.Contains(cg, want) {
		t.Fatalf("clamd's cgroups:\n%swant a line %q", cg, want)
	}
	if placed != 1 {
		t.Fatalf("OnStart called %d times", placed)
	}
	if strings.Contains(m.logBuf.String(), "could not start clamd inside its cgroup") {
		t.Fatalf("fell back to moving clamd:\n%s", m.logBuf.String())
	}
}

// A CgroupDir that is not a cgroup makes the start fall back to a normal one.
func TestManagedCgroupDirFallback(t *testing.T) {
	m := startManaged(t, func(o *Options) { o.CgroupDir = t.TempDir() })
	m.ready(t)
	if !strings.Contains(m.logBuf.String(), "could not start clamd inside its cgroup") {
		t.Fatalf("no warning about the fallback:\n%s", m.logBuf.String())
	}
}

// TestManagedPlacementChargesMemory checks that clamd's memory is charged to
// the cgroup OnStart puts it in: the gate holds clamd until it is there.
func TestManagedPlacementChargesMemory(t *testing.T) {
	dir, limit, v2 := testCgroup(t, true)
	if err := os.WriteFile(limit, []byte(strconv.Itoa(256<<20)), 0o644); err != nil {
		testutil.Skip(t, "cannot set a memory limit: "+err.Error())
	}
	m := startManaged(t, func(o *Options) {
		o.MemoryLimit = 256 << 20
		o.OnStart = joinCgroup(dir)
	})
	pid := m.ready(t)
	usageFile := "memory.usage_in_bytes"
	if v2 {
		usageFile = "memory.current"
	}
	b, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		t.Fatal(err)
	}
	usage, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	anon := statusKB(t, pid, "RssAnon")
	// Everything clamd allocated is charged here, not to the test's cgroup.
	if usage < anon*1024*3/4 {
		t.Fatalf("cgroup charged %d bytes, clamd has %d kB anonymous memory", usage, anon)
	}
	t.Logf("cgroup charged %d KiB; clamd RssAnon %d kB", usage>>10, anon)
}

func statusKB(t *testing.T, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}
