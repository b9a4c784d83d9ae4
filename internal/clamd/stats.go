package clamd

import (
	"fmt"
	"strconv"
	"strings"
)

// Stats is clamd's answer to STATS: its thread pools, their queues, and its
// memory use.
type Stats struct {
	Pools  []Pool
	Memory Memory
	Raw    string // the reply as received, for logs
}

// Pool is one of clamd's thread pools (there is one unless a reload is in
// progress).
type Pool struct {
	State              string // e.g. "VALID PRIMARY"
	Live, Idle, Max    int    // threads
	IdleTimeoutSeconds int
	Queue              int // queued items not yet taken by a thread
}

// Memory is the MEMSTATS line. Sizes are in bytes; -1 where clamd prints N/A
// (glibc's mallinfo is not available to it on every platform).
type Memory struct {
	Heap, Mmap, Used, Free, Releasable int64
	Pools                              int   // libclamav memory pools (one per loaded engine)
	PoolsUsed, PoolsTotal              int64 // bytes held by those pools: mostly the signatures
}

// Threads sums live, idle and max threads over the pools.
func (s Stats) Threads() (live, idle, max int) {
	for _, p := range s.Pools {
		live += p.Live
		idle += p.Idle
		max += p.Max
	}
	return
}

// QueueLen sums the queued items over the pools.
func (s Stats) QueueLen() int {
	n := 0
	for _, p := range s.Pools {
		n += p.Queue
	}
	return n
}

// ParseStats parses a STATS reply, for example:
//
//	POOLS: 1
//
//	STATE: VALID PRIMARY
//	THREADS: live 1  idle 0 max 2 idle-timeout 30
//	QUEUE: 0 items
//		STATS 0.000004
//
//	MEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A pools 1 pools_used 5.922M pools_total 5.999M
//	END
func ParseStats(s string) (Stats, error) {
	st := Stats{Raw: s, Memory: Memory{Heap: -1, Mmap: -1, Used: -1, Free: -1, Releasable: -1, PoolsUsed: -1, PoolsTotal: -1}}
	var cur *Pool
	npools := -1
	sawEnd := false
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, " \r")
		switch {
		case strings.HasPrefix(line, "POOLS: "):
			n, err := strconv.Atoi(strings.TrimSpace(line[len("POOLS: "):]))
			if err != nil || n < 0 {
				return Stats{}, fmt.Errorf("parse clamd STATS: bad line %q", line)
			}
			npools = n
		case strings.HasPrefix(line, "STATE: "):
			st.Pools = append(st.Pools, Pool{State: strings.TrimSpace(line[len("STATE: "):])})
			cur = &st.Pools[len(st.Pools)-1]
		case strings.HasPrefix(line, "THREADS: "):
			if cur == nil {
				return Stats{}, fmt.Errorf("parse clamd STATS: THREADS before STATE")
			}
			f := strings.Fields(line[len("THREADS: "):])
			for i := 0; i+1 < len(f); i += 2 {
				n, err := strconv.Atoi(f[i+1])
				if err != nil {
					return Stats{}, fmt.Errorf("parse clamd STATS: bad line %q", line)
				}
				switch f[i] {
				case "live":
					cur.Live = n
				case "idle":
					cur.Idle = n
				case "max":
					cur.Max = n
				case "idle-timeout":
					cur.IdleTimeoutSeconds = n
				}
			}
		case strings.HasPrefix(line, "QUEUE: "):
			if cur == nil {
				return Stats{}, fmt.Errorf("parse clamd STATS: QUEUE before STATE")
			}
			f := strings.Fields(line[len("QUEUE: "):])
			if len(f) < 2 || f[1] != "items" {
				return Stats{}, fmt.Errorf("parse clamd STATS: bad line %q", line)
			}
			n, err := strconv.Atoi(f[0])
			if err != nil || n < 0 {
				return Stats{}, fmt.Errorf("parse clamd STATS: bad line %q", line)
			}
			cur.Queue = n
		case strings.HasPrefix(line, "MEMSTATS: "):
			if err := parseMemstats(&st.Memory, line[len("MEMSTATS: "):]); err != nil {
				return Stats{}, fmt.Errorf("parse clamd STATS: %v in %q", err, line)
			}
		case line == "END":
			sawEnd = true
		}
	}
	if npools < 0 || !sawEnd {
		return Stats{}, fmt.Errorf("parse clamd STATS: missing POOLS or END line")
	}
	return st, nil
}

func parseMemstats(m *Memory, s string) error {
	f := strings.Fields(s)
	if len(f)%2 != 0 {
		return fmt.Errorf("odd number of fields")
	}
	for i := 0; i < len(f); i += 2 {
		key, val := f[i], f[i+1]
		if key == "pools" {
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return fmt.Errorf("bad pools %q", val)
			}
			m.Pools = n
			continue
		}
		b, err := parseMB(val)
		if err != nil {
			return fmt.Errorf("bad %s %q", key, val)
		}
		switch key {
		case "heap":
			m.Heap = b
		case "mmap":
			m.Mmap = b
		case "used":
			m.Used = b
		case "free":
			m.Free = b
		case "releasable":
			m.Releasable = b
		case "pools_used":
			m.PoolsUsed = b
		case "pools_total":
			m.PoolsTotal = b
		}
	}
	return nil
}

// parseMB reads clamd's "5.922M" (mebibytes, three decimals) or "N/A".
func parseMB(s string) (int64, error) {
	if s == "N/A" {
		return -1, nil
	}
	num, ok := strings.CutSuffix(s, "M")
	if !ok {
		return 0, fmt.Errorf("no M suffix")
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !(f >= 0 && f <= 1<<40) { // also rejects NaN
		return 0, fmt.Errorf("bad number")
	}
	return int64(f * (1 << 20)), nil
}
