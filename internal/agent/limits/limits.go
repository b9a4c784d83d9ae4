package limits

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Mode is how a Group limits its processes.
type Mode string

const (
	ModeCgroup2 Mode = "cgroup2" // unified hierarchy: cpu.max, memory.max
	ModeCgroup1 Mode = "cgroup1" // legacy hierarchies: cpu.cfs_quota_us, memory.limit_in_bytes
	ModeNice    Mode = "nice"    // no cgroup access: nice 10, idle I/O class, scans paced to the CPU limit
	ModeNone    Mode = "none"    // nothing asked for and no cgroup available: processes run as they are
)

// DefaultRoot is where the cgroup file systems are mounted.
const DefaultRoot = "/sys/fs/cgroup"

// Period is the CPU accounting period written with every quota: quota =
// CPUPercent% of it, so 250 gives 250000 µs per 100000 µs = 2.5 cores.
const Period = 100 * time.Millisecond

// Config says what to create.
type Config struct {
	// Name of the cgroup, created as <root>/avfleet/<Name> (v2) or
	// <root>/<controller>/avfleet/<Name> (v1). In a delegated cgroup v2
	// subtree (systemd's Delegate=) the group is <own>/clamd instead, and
	// Name is not used.
	Name        string
	CPUPercent  int    // % of one core: 100 = one core, 250 = 2.5 cores; 0 = unlimited
	MemoryBytes int64  // 0 = unlimited
	Root        string // cgroup mount root, default DefaultRoot; tests point it at a fake

	rmdir      func(string) error // how a cgroup directory is removed; tests on a fake cgroupfs replace it
	selfCgroup string             // where this process's cgroups are listed, default /proc/self/cgroup
	pid        int                // this process, default os.Getpid()
}

// Stats is what the agent reports about the group.
type Stats struct {
	CPU         time.Duration // CPU time used by the group since it was created
	MemoryBytes int64         // memory charged to the group now
	OOMKills    uint64        // processes the kernel killed for exceeding MemoryBytes
}

// ErrNoCgroup is returned by Stats when the group has no cgroup to read.
var ErrNoCgroup = errors.New("no cgroup: CPU and memory statistics are not available")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) check() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("limits: cgroup name %q: use 1-64 letters, digits, '.', '_' or '-'", c.Name)
	}
	if c.CPUPercent < 0 {
		return fmt.Errorf("limits: cpu_percent %d: must be >= 0", c.CPUPercent)
	}
	if c.MemoryBytes < 0 {
		return fmt.Errorf("limits: memory_bytes %d: must be >= 0", c.MemoryBytes)
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	return nil
}

func (c *Config) limited() bool { return c.CPUPercent > 0 || c.MemoryBytes > 0 }

// cpuQuota is the quota in µs per Period, or -1 for unlimited.
func (c *Config) cpuQuota() int64 {
	if c.CPUPercent == 0 {
		return -1
	}
	return int64(c.CPUPercent) * Period.Microseconds() / 100
}
