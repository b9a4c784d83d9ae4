package clamdproc

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// File names inside Options.StateDir.
const (
	ConfName   = "clamd.conf"
	SocketName = "clamd.sock"
	TmpName    = "clamd-tmp" // clamd's TemporaryDirectory, emptied at every start
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// confLines renders clamd.conf. Scan limits are written out even where they
// equal clamd 1.4's defaults, so an operator reading the file sees what
// applies.
//
// There is deliberately no User line: clamd then keeps the agent's identity
// (root), which it needs to bind its socket in the 0700 state directory and
// to use the temp directory there; with "User clamav" clamd 1.4.6 fails at
// start with "Socket file ... could not be bound: Permission denied". FILDES
// scans are not affected either way: clamd reads the descriptor it is given.
func (o *Options) confLines() []string {
	threads := o.threads()
	l := []string{
		"# Written by the avfleet agent at every clamd start; edits are lost.",
		"Foreground yes",
		"LocalSocket " + o.socketPath(),
		"LocalSocketMode 660",
		"FixStaleSocket yes",
		"DatabaseDirectory " + o.DatabaseDir,
		"TemporaryDirectory " + filepath.Join(o.StateDir, TmpName),
		// Log to stdout/stderr only: the agent reads them (reload confirmation,
		// exit reasons) and forwards them to its own log. No LogFile to grow.
		"LogSyslog no",
		"LogTime no",
		"LogClean no",
		"LogVerbose no",
		// The agent reloads after every install; clamd's own periodic database
		// check would race with it and could reload a half-written set.
		"SelfCheck 0",
		fmt.Sprintf("MaxThreads %d", threads),
		fmt.Sprintf("MaxQueue %d", max(100, 4*threads)),
		"MaxConnectionQueueLength 200",
		"StreamMaxLength 100M",
		"MaxScanSize 400M",
		"MaxFileSize 100M",
		"MaxRecursion 17",
		"MaxFiles 10000",
		"MaxScanTime 120000",
		"ReadTimeout 120", // also how long an idle IDSESSION stays open
		"CommandReadTimeout 30",
	}
	if o.MemoryLimit > 0 {
		// A concurrent reload holds two engines at once, about twice the
		// memory; under a limit that is an OOM kill waiting to happen.
		l = append(l, "ConcurrentDatabaseReload no")
	}
	return append(l, o.ExtraConf...)
}

func (o *Options) threads() int {
	if o.MaxThreads > 0 {
		return o.MaxThreads
	}
	return runtime.NumCPU()
}

func (o *Options) socketPath() string { return filepath.Join(o.StateDir, SocketName) }

func (o *Options) confPath() string { return filepath.Join(o.StateDir, ConfName) }

// writeConf writes clamd.conf atomically (temp file + rename) so a crash
// never leaves clamd a half-written configuration.
func (o *Options) writeConf() error {
	data := []byte(strings.Join(o.confLines(), "\n") + "\n")
	return fsutil.WriteFile(o.confPath(), data, 0o600)
}

// prepareDirs creates the state and temp directories and empties the temp
// directory: clamd leaves its INSTREAM spool files there when it is killed.
func (o *Options) prepareDirs() error {
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return fmt.Errorf("create clamd state dir: %w", err)
	}
	tmp := filepath.Join(o.StateDir, TmpName)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("empty clamd temp dir: %w", err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("create clamd temp dir: %w", err)
	}
	return nil
}
