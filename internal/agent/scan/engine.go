package scan

import (
	"context"
	"os"
	"runtime"
)

// Engine opens connections to clamd; each scan worker holds one.
type Engine interface {
	Open(ctx context.Context) (Conn, error)
}

// Conn scans open files. Scan's error means the connection failed (the
// worker opens a new one and tries the file once more); what clamd said
// about the file itself is in the Verdict.
type Conn interface {
	Scan(ctx context.Context, f *os.File) (Verdict, error)
	Close() error
}

// Verdict is clamd's answer about one file.
type Verdict struct {
	Signature string // a signature matched: the file is infected
	Error     string // clamd could not scan the file; its message
	Limit     string // clamd did not scan (all of) the file because of one of its limits
}

// DefaultMaxFileSize is clamd's default MaxFileSize: larger files are not
// sent (clamd would skip them and answer OK) but counted as too_large.
const DefaultMaxFileSize = 100 << 20

// Concurrency is how many files a scan has clamd scan at once: clamd's
// max_threads when set, else the CPUs this process may use, and never more
// than the cores limits.cpu_percent allows (at least one). The scanner keeps
// one more request waiting in clamd's queue, so that a clamd thread never
// idles between files; more would only queue in clamd, and more scanning at
// once than the CPU quota only adds contention inside the cgroup.
func Concurrency(maxThreads, cpuPercent int) int {
	n := maxThreads
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if cpuPercent > 0 {
		n = min(n, max(1, (cpuPercent+99)/100))
	}
	return max(1, n)
}
