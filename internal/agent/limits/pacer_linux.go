package limits

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture).
const clockTick = 10 * time.Millisecond

// procCPU sums the CPU time of a changing set of processes from
// /proc/PID/stat: each process counts from when it was first read, and one
// that has exited, or whose pid now names another process (a different
// start time), leaves the set.
type procCPU struct {
	mu      sync.Mutex
	members map[int]*procSample
	total   time.Duration
}

type procSample struct {
	start uint64 // field 22: start time, tells a reused pid apart
	cpu   time.Duration
	seen  bool
}

func (c *procCPU) add(pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.members == nil {
		c.members = map[int]*procSample{}
	}
	if _, ok := c.members[pid]; !ok {
		c.members[pid] = &procSample{}
	}
}

func (c *procCPU) read() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pid, s := range c.members {
		cpu, start, err := readProcCPU(pid)
		if err != nil || s.seen && start != s.start {
			delete(c.members, pid)
			continue
		}
		if s.seen {
			c.total += cpu - s.cpu
		}
		s.cpu, s.start, s.seen = cpu, start, true
	}
	return c.total
}

// readProcCPU returns utime+stime and the start time of pid.
func readProcCPU(pid int) (time.Duration, uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	v, err := statFields(b, 14, 15, 22) // utime, stime, starttime
	if err != nil {
		return 0, 0, err
	}
	return time.Duration(v[0]+v[1]) * clockTick, uint64(v[2]), nil
}
