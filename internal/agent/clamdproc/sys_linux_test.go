package clamdproc

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupMounts(t *testing.T) {
	hybrid := `24 30 0:22 / /sys rw - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
40 35 0:35 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
41 35 0:36 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`
	v1, v2 := cgroupMounts([]byte(hybrid))
	if v1 != "/sys/fs/cgroup/memory" || v2 != "/sys/fs/cgroup/unified" {
		t.Fatalf("hybrid: v1 %q v2 %q", v1, v2)
	}
	v1, v2 = cgroupMounts([]byte("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"))
	if v1 != "" || v2 != "/sys/fs/cgroup" {
		t.Fatalf("unified: v1 %q v2 %q", v1, v2)
	}
	if hasController("cpu,cpuacct", "memory") || !hasController("rw,memory", "memory") {
		t.Fatal("hasController")
	}
}

func TestReadKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "memory.events")
	os.WriteFile(p, []byte("low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n"), 0o644)
	if n, err := readKey(p, "oom_kill"); err != nil || n != 1 {
		t.Fatalf("readKey = %d, %v", n, err)
	}
	if _, err := readKey(p, "missing"); err == nil {
		t.Fatal("missing key read")
	}
}
