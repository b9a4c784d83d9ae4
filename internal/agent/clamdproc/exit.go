package clamdproc

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// OOMVerdict says whether an exit was the kernel's OOM killer.
type OOMVerdict int

const (
	OOMNo        OOMVerdict = iota // not an OOM kill (or no sign of one)
	OOMProbable                    // SIGKILL while a memory limit is set, no counter to confirm
	OOMConfirmed                   // the cgroup's oom_kill counter went up while clamd ran
)

func (v OOMVerdict) String() string {
	switch v {
	case OOMProbable:
		return "probable"
	case OOMConfirmed:
		return "confirmed"
	}
	return "no"
}

// Exit describes how one clamd process ended.
type Exit struct {
	PID       int
	Code      int    // exit status; -1 when killed by a signal
	Signal    string // "SIGKILL", ... when killed by a signal
	Requested bool   // the supervisor stopped it (shutdown, Restart, failed start)
	Uptime    time.Duration
	OOM       OOMVerdict
	// OOMKills is the cgroup's oom_kill counter before and after, when readable.
	OOMKillsBefore, OOMKillsAfter uint64
	OOMCounter                    bool     // the counter was readable
	LastLines                     []string // clamd's last output lines, for context
}

// String is the one-line reason operators see in the log and in events.
func (e Exit) String() string {
	var b strings.Builder
	if e.Signal != "" {
		fmt.Fprintf(&b, "killed by %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "exit code %d", e.Code)
	}
	switch e.OOM {
	case OOMConfirmed:
		fmt.Fprintf(&b, " by the kernel OOM killer (cgroup oom_kill %d -> %d): raise limits.memory_bytes", e.OOMKillsBefore, e.OOMKillsAfter)
	case OOMProbable:
		b.WriteString(": probably an OOM kill (a memory limit is set and clamd got SIGKILL; no cgroup counter to confirm)")
	default:
		if e.Signal == "SIGKILL" && e.OOMCounter && !e.Requested {
			b.WriteString(" (not an OOM kill: the cgroup oom_kill counter did not change)")
		}
	}
	if e.Requested {
		b.WriteString(" (stopped by the agent)")
	}
	return b.String()
}

// classify fills Code/Signal/OOM from the process state.
func classify(e *Exit, st *os.ProcessState, memoryLimited bool) {
	e.Code = st.ExitCode()
	ws, ok := st.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		e.Code = -1
		e.Signal = signalName(ws.Signal())
	}
	if e.Signal != "SIGKILL" || e.Requested {
		return
	}
	switch {
	case e.OOMCounter && e.OOMKillsAfter > e.OOMKillsBefore:
		e.OOM = OOMConfirmed
	case e.OOMCounter:
		e.OOM = OOMNo
	case memoryLimited:
		e.OOM = OOMProbable
	}
}

func signalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGSEGV: "SIGSEGV",
		syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGINT: "SIGINT",
		syscall.SIGHUP: "SIGHUP", syscall.SIGILL: "SIGILL", syscall.SIGFPE: "SIGFPE",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d (%v)", int(s), s)
}
