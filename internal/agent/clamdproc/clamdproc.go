package clamdproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
)

// Options configures a managed clamd.
type Options struct {
	// Binary is the clamd program: a path, or a name looked up in PATH and
	// then /usr/sbin (Debian installs clamd there, outside a non-root PATH).
	// Empty means "clamd".
	Binary string
	// StateDir holds clamd.conf, the socket and clamd's temp dir. The socket
	// path must fit in 107 bytes.
	StateDir string
	// DatabaseDir is clamd's DatabaseDirectory.
	DatabaseDir string
	// MaxThreads is clamd's MaxThreads; 0 means the number of CPUs. The agent
	// passes the number its CPU limit allows.
	MaxThreads int
	// MemoryLimit is the memory limit (bytes) clamd runs under, 0 for none.
	// Set, it turns ConcurrentDatabaseReload off and makes a SIGKILL count
	// as a probable OOM kill.
	MemoryLimit int64
	// ExtraConf lines are appended to clamd.conf (later lines win in clamd).
	ExtraConf []string

	// CgroupDir, on Linux with cgroup v2, is a cgroup directory clamd is
	// started inside (clone3 CLONE_INTO_CGROUP), so every byte it allocates
	// is charged there. If that start fails, clamd is started normally and
	// OnStart is relied on.
	CgroupDir string
	// OnStart is called with clamd's pid right after it starts, before it
	// has loaded its databases; the limits code puts it into its cgroup here.
	// The window between exec and the call is well under a millisecond,
	// while clamd spends it parsing its configuration: what it allocates
	// before joining stays charged to the agent's cgroup, a few hundred KiB.
	// Use CgroupDir to close even that window. An error stops that clamd
	// (clamd does not run outside its limits) and counts as a failed start.
	OnStart func(pid int) error
	// OOMKills reads the oom_kill counter of clamd's memory cgroup. nil
	// means: find clamd's memory cgroup in /proc/PID/cgroup and read its
	// memory.events (v2) or memory.oom_control (v1).
	OOMKills func() (uint64, error)
	// OnEvent receives lifecycle events. It is called from the supervisor's
	// goroutine and must not block.
	OnEvent func(Event)
	// Logger receives clamd's output lines (attribute source=clamd) and the
	// supervisor's own messages. nil discards them.
	Logger *slog.Logger

	// StartTimeout bounds the wait for clamd's first PONG; a clamd that does
	// not answer in time is killed and restarted. Loading the official main
	// and daily databases takes tens of seconds, much longer under a tight
	// CPU limit. 0 means 10 minutes.
	StartTimeout time.Duration
	// StopGrace is how long clamd gets after SIGTERM before SIGKILL; 0 means 10 s.
	StopGrace time.Duration
	// MinBackoff and MaxBackoff bound the delay before a restart; it doubles
	// after each failure and goes back to MinBackoff once clamd has run for
	// a minute. Jitter takes the delay anywhere in [d/2, d]. 0 means 1 s and 2 min.
	MinBackoff, MaxBackoff time.Duration
	// UnloadedRestart is how long a clamd left without an engine by a failed
	// reload (ConcurrentDatabaseReload no) keeps running before the supervisor
	// restarts it on its own, for a caller that did not call Restart after
	// restoring the previous databases. 0 means 30 s.
	UnloadedRestart time.Duration
}

// EventKind names a lifecycle event.
type EventKind string

const (
	EventStarted      EventKind = "started"       // process started (PID)
	EventStartFailed  EventKind = "start_failed"  // could not start, place, or get a PONG (Err)
	EventReady        EventKind = "ready"         // answered PING (PID)
	EventExited       EventKind = "exited"        // process ended (Exit)
	EventReloaded     EventKind = "reloaded"      // reload confirmed (Signatures)
	EventReloadFailed EventKind = "reload_failed" // reload failed (Err)
)

// Event is one lifecycle event.
type Event struct {
	Time       time.Time
	Kind       EventKind
	PID        int
	Exit       *Exit // EventExited
	Restarts   int   // unexpected exits so far
	Signatures int   // EventReloaded
	Err        error // EventStartFailed, EventReloadFailed
}

// Status is a snapshot of the managed clamd.
type Status struct {
	PID            int // 0 when no clamd runs
	Ready          bool
	Starts         int // processes started
	Restarts       int // exits the supervisor did not ask for
	StartedAt      time.Time
	LastExit       *Exit
	Signatures     int // from the last confirmed reload; 0 before one
	LastReload     time.Time
	EngineUnloaded bool // a failed reload left clamd without databases (see Reload)
}

// Errors callers may test with errors.Is.
var (
	ErrNotRunning = errors.New("clamd is not running")
	ErrStopped    = errors.New("clamd supervisor has stopped")
)

// ReloadError is a reload that clamd reported as failed.
type ReloadError struct {
	Reason string   // clamd's own reason, e.g. "Database load failed: Malformed database"
	Lines  []string // clamd's error lines about it (LibClamAV Error: ...)
	// EngineUnloaded: with ConcurrentDatabaseReload no, clamd 1.4.6 frees
	// its engine before loading the new one, so after a failure it has no
	// databases at all: it still answers PING, scans get no reply, and a
	// further RELOAD fails too. Only a restart recovers: put the previous
	// databases back, then call Restart. (With concurrent reload clamd keeps
	// serving the previous databases and this is false.)
	EngineUnloaded bool
}

func (e *ReloadError) Error() string {
	s := "clamd reload failed: " + e.Reason
	if len(e.Lines) > 0 {
		s += " (" + strings.Join(e.Lines, "; ") + ")"
	}
	if e.EngineUnloaded {
		s += "; clamd now has no databases loaded until it is restarted"
	} else {
		s += "; clamd keeps the previous databases"
	}
	return s
}

// Clamd is one managed clamd. Create it with New, run it with Run.
type Clamd struct {
	opts   Options
	log    *slog.Logger
	client *clamd.Client

	reloadMu sync.Mutex // one reload at a time

	mu        sync.Mutex
	cur       *proc
	changed   chan struct{} // closed and replaced at every state change
	ran       bool
	stopped   bool
	runErr    error
	starts    int
	restarts  int
	lastExit  *Exit
	sigs      int
	lastRel   time.Time
	unloaded  bool
	restartCh chan struct{}
	subs      map[chan string]struct{}
}

// proc is one clamd process.
type proc struct {
	gen    int
	pid    int
	start  time.Time
	ready  bool
	exited chan struct{} // closed when it has ended
}

// New checks opts and returns a Clamd that does nothing until Run.
func New(opts Options) (*Clamd, error) {
	if opts.StateDir == "" || !filepath.IsAbs(opts.StateDir) {
		return nil, fmt.Errorf("clamd: state dir %q must be an absolute path", opts.StateDir)
	}
	if opts.DatabaseDir == "" || !filepath.IsAbs(opts.DatabaseDir) {
		return nil, fmt.Errorf("clamd: database dir %q must be an absolute path", opts.DatabaseDir)
	}
	if n := len(opts.socketPath()); n > maxSocketPath {
		return nil, fmt.Errorf("clamd: socket path %s is %d bytes, longer than the %d a unix socket allows: use a shorter state_dir", opts.socketPath(), n, maxSocketPath)
	}
	for _, l := range opts.ExtraConf {
		if strings.ContainsAny(l, "\n\r") {
			return nil, fmt.Errorf("clamd: extra clamd.conf line %q contains a newline", l)
		}
	}
	if opts.Binary == "" {
		opts.Binary = "clamd"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.StartTimeout, 10*time.Minute)
	def(&opts.StopGrace, 10*time.Second)
	def(&opts.MinBackoff, time.Second)
	def(&opts.MaxBackoff, 2*time.Minute)
	def(&opts.UnloadedRestart, 30*time.Second)
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Clamd{
		opts:      opts,
		log:       log,
		client:    &clamd.Client{Addr: clamd.Addr{Network: "unix", Address: opts.socketPath()}},
		changed:   make(chan struct{}),
		restartCh: make(chan struct{}, 1),
		subs:      map[chan string]struct{}{},
	}, nil
}

// Socket is the address of the managed clamd: unix:///STATE_DIR/clamd.sock.
func (c *Clamd) Socket() string { return c.client.Addr.String() }

// Client returns a client for the managed clamd.
func (c *Clamd) Client() *clamd.Client { return &clamd.Client{Addr: c.client.Addr} }

// ConfPath is where the generated clamd.conf is written.
func (c *Clamd) ConfPath() string { return c.opts.confPath() }

// LookPath finds the clamd binary as the supervisor does: name as a path if it
// contains a slash, else in PATH, then in /usr/sbin and /sbin.
func LookPath(name string) (string, error) {
	if name == "" {
		name = "clamd"
	}
	if strings.Contains(name, "/") {
		if st, err := os.Stat(name); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("clamd binary %s: not an executable file", name)
		}
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("clamd binary %q not found in PATH, /usr/sbin or /sbin (install clamav-daemon, or set clamd.binary)", name)
}

// BinaryVersion runs "clamd --version" (no daemon needed), e.g. "ClamAV 1.4.6".
func BinaryVersion(ctx context.Context, binary string) (string, error) {
	p, err := LookPath(binary)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, p, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", p, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Version asks the running clamd (VERSION): engine version, and the daily
// database's version when one named daily is loaded.
func (c *Clamd) Version(ctx context.Context) (clamd.Version, error) {
	return c.client.Version(ctx)
}

// Status returns a snapshot.
func (c *Clamd) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{Starts: c.starts, Restarts: c.restarts, LastExit: c.lastExit, Signatures: c.sigs,
		LastReload: c.lastRel, EngineUnloaded: c.unloaded}
	if c.cur != nil {
		s.PID, s.Ready, s.StartedAt = c.cur.pid, c.cur.ready, c.cur.start
	}
	return s
}

// Ready waits until a clamd started by Run answers PING.
func (c *Clamd) Ready(ctx context.Context) error {
	_, err := c.waitReady(ctx, 0)
	return err
}

// waitReady waits for a ready process of generation > after.
func (c *Clamd) waitReady(ctx context.Context, after int) (*proc, error) {
	for {
		c.mu.Lock()
		p, ch, stopped, runErr, last := c.cur, c.changed, c.stopped, c.runErr, c.lastExit
		ready := p != nil && p.ready && p.gen > after
		c.mu.Unlock()
		if ready {
			return p, nil
		}
		if stopped {
			if runErr != nil {
				return nil, fmt.Errorf("%w: %v", ErrStopped, runErr)
			}
			return nil, ErrStopped
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("wait for clamd to answer PING (last exit: %s): %w", last, context.Cause(ctx))
			}
			return nil, fmt.Errorf("wait for clamd to answer PING: %w", context.Cause(ctx))
		}
	}
}

// Restart stops the running clamd (SIGTERM) and waits until the next one
// answers PING. Use it after putting back the previous databases when Reload
// returned a ReloadError with EngineUnloaded.
func (c *Clamd) Restart(ctx context.Context) error {
	c.mu.Lock()
	gen := 0
	if c.cur != nil {
		gen = c.cur.gen
	}
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return ErrStopped
	}
	select {
	case c.restartCh <- struct{}{}:
	default: // a restart is already pending
	}
	_, err := c.waitReady(ctx, gen)
	return err
}

// Run starts clamd and keeps it running until ctx is cancelled, then stops
// it (SIGTERM, SIGKILL after StopGrace) and returns nil. It returns an error
// only for what a restart cannot fix: no clamd binary, an unwritable state
// directory.
func (c *Clamd) Run(ctx context.Context) (err error) {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return errors.New("clamd: Run called twice")
	}
	c.ran = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.stopped, c.runErr = true, err
		c.notifyLocked()
		c.mu.Unlock()
	}()

	bin, err := LookPath(c.opts.Binary)
	if err != nil {
		return err
	}
	backoff := c.opts.MinBackoff
	for gen := 1; ; gen++ {
		if err := c.opts.prepareDirs(); err != nil {
			return err
		}
		if err := c.opts.writeConf(); err != nil {
			return err
		}
		res := c.runOnce(ctx, bin, gen)
		if ctx.Err() != nil {
			return nil
		}
		delay := time.Duration(0)
		if !res.restartNow {
			if res.healthy {
				backoff = c.opts.MinBackoff
			}
			delay = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, c.opts.MaxBackoff)
			c.log.Warn("clamd restarting", "in", delay.Round(time.Millisecond).String(), "restarts", c.Status().Restarts)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		case <-c.restartCh: // an explicit Restart skips the backoff
		}
	}
}

// startSpec is how runOnce wants clamd started; startCmd is per platform.
type startSpec struct {
	bin       string
	args      []string
	command   func(name string, args ...string) *exec.Cmd // sets Dir and output
	cgroupDir string
	gate      bool          // hold clamd until release (OnStart places it first)
	alive     chan struct{} // closed once clamd has exited
	log       *slog.Logger
}

type onceResult struct {
	restartNow bool // Restart or the unloaded-engine timer: start again without backoff
	healthy    bool // it got ready and ran long enough to reset the backoff
}

// runOnce starts one clamd, waits for it to end, and records why.
func (c *Clamd) runOnce(ctx context.Context, bin string, gen int) onceResult {
	fail := func(err error) onceResult {
		c.log.Error("clamd start failed", "err", err)
		c.emit(Event{Kind: EventStartFailed, Err: err})
		return onceResult{}
	}
	// FixStaleSocket would deal with a socket left by a killed clamd, but
	// waitPong must not reach a stale file before the new clamd binds.
	os.Remove(c.opts.socketPath())

	pr, pw, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("create pipe for clamd output: %w", err))
	}
	waitDone := make(chan struct{})
	cmd, release, startErr := startCmd(startSpec{
		bin:  bin,
		args: []string{"--config-file=" + c.opts.confPath()},
		command: func(name string, args ...string) *exec.Cmd {
			cmd := exec.Command(name, args...)
			cmd.Dir = c.opts.StateDir
			cmd.Stdout, cmd.Stderr = pw, pw // one pipe keeps clamd's stdout and stderr lines in order
			return cmd
		},
		cgroupDir: c.opts.CgroupDir,
		gate:      c.opts.OnStart != nil,
		alive:     waitDone,
		log:       c.log,
	})
	pw.Close()
	if startErr != nil {
		close(waitDone)
		pr.Close()
		return fail(fmt.Errorf("start %s: %w", bin, startErr))
	}
	p := &proc{gen: gen, pid: cmd.Process.Pid, start: time.Now(), exited: make(chan struct{})}
	tail := newTail(20)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.readOutput(pr, tail, p.pid)
	}()
	var state *os.ProcessState
	go func() {
		state, _ = cmd.Process.Wait()
		close(waitDone)
	}()

	c.mu.Lock()
	c.cur = p
	c.starts++
	c.unloaded = false
	c.notifyLocked()
	c.mu.Unlock()
	c.log.Info("clamd started", "pid", p.pid, "binary", bin, "config", c.opts.confPath())
	c.emit(Event{Kind: EventStarted, PID: p.pid})

	var (
		stopped    bool // the supervisor ended it: its SIGKILL is no OOM kill
		restartNow bool
		healthy    bool
		startErr2  error
	)
	if c.opts.OnStart != nil {
		if err := c.opts.OnStart(p.pid); err != nil {
			startErr2 = fmt.Errorf("place clamd (pid %d) in its limits: %w", p.pid, err)
		}
	}
	if release != nil {
		if err := release(startErr2 == nil); err != nil && startErr2 == nil {
			startErr2 = fmt.Errorf("let clamd (pid %d) start: %w", p.pid, err)
		}
	}
	oomRead := c.opts.OOMKills
	if oomRead == nil {
		oomRead = cgroupOOMReader(p.pid)
	}
	var oomBefore uint64
	oomOK := false
	if oomRead != nil && startErr2 == nil {
		oomBefore, err = oomRead()
		oomOK = err == nil
	}

	if startErr2 == nil {
		if c.waitPong(ctx, waitDone) {
			c.mu.Lock()
			p.ready = true
			c.notifyLocked()
			c.mu.Unlock()
			c.log.Info("clamd ready", "pid", p.pid, "startup", time.Since(p.start).Round(time.Millisecond).String())
			c.emit(Event{Kind: EventReady, PID: p.pid})
			restartNow = c.waitExit(ctx, p, waitDone)
			healthy = time.Since(p.start) > time.Minute
		} else if ctx.Err() == nil && !isDone(waitDone) {
			startErr2 = fmt.Errorf("clamd (pid %d) did not answer PING within %s", p.pid, c.opts.StartTimeout)
		}
	}
	if startErr2 != nil {
		c.log.Error("clamd start failed; stopping it", "err", startErr2)
		c.emit(Event{Kind: EventStartFailed, PID: p.pid, Err: startErr2})
	}
	if !isDone(waitDone) {
		stopped = true
		c.stop(cmd, waitDone)
	}
	<-waitDone
	select {
	case <-readDone:
	case <-time.After(2 * time.Second): // a grandchild holding the pipe open
	}
	pr.Close()
	<-readDone

	e := Exit{PID: p.pid, Requested: stopped, Uptime: time.Since(p.start), LastLines: tail.lines()}
	if oomOK {
		if after, err := oomRead(); err == nil {
			e.OOMCounter, e.OOMKillsBefore, e.OOMKillsAfter = true, oomBefore, after
		}
	}
	classify(&e, state, c.opts.MemoryLimit > 0)

	c.mu.Lock()
	counted := ctx.Err() == nil && !restartNow
	if counted {
		c.restarts++
	}
	c.lastExit = &e
	c.cur = nil
	close(p.exited)
	restarts := c.restarts
	c.notifyLocked()
	c.mu.Unlock()
	if counted && !stopped {
		c.log.Error("clamd exited unexpectedly", "pid", p.pid, "exit", e.String(), "uptime", e.Uptime.Round(time.Second).String(),
			"last_output", strings.Join(e.LastLines, " | "))
	} else {
		c.log.Info("clamd stopped", "pid", p.pid, "exit", e.String())
	}
	c.emit(Event{Kind: EventExited, PID: p.pid, Exit: &e, Restarts: restarts})
	return onceResult{restartNow: restartNow, healthy: healthy}
}

// waitExit waits while a ready clamd runs. It returns true when the
// supervisor should stop it and start another at once: Restart was called, or
// a failed reload left clamd without databases for UnloadedRestart.
func (c *Clamd) waitExit(ctx context.Context, p *proc, exited <-chan struct{}) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		changed, unloaded := c.changed, c.unloaded
		c.mu.Unlock()
		var timerC <-chan time.Time
		if unloaded {
			if timer == nil {
				timer = time.NewTimer(c.opts.UnloadedRestart)
			}
			timerC = timer.C
		}
		select {
		case <-exited:
			return false
		case <-ctx.Done():
			return false
		case <-c.restartCh:
			c.log.Info("clamd restart requested", "pid", p.pid)
			return true
		case <-timerC:
			c.log.Warn("clamd has had no databases since a failed reload; restarting it", "pid", p.pid, "after", c.opts.UnloadedRestart.String())
			return true
		case <-changed:
		}
	}
}

// waitPong polls PING until clamd answers, exits, ctx ends or StartTimeout.
func (c *Clamd) waitPong(ctx context.Context, exited <-chan struct{}) bool {
	deadline := time.NewTimer(c.opts.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.client.Ping(pctx)
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-exited:
			return false
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, then SIGKILL after StopGrace, and waits for the exit.
func (c *Clamd) stop(cmd *exec.Cmd, exited <-chan struct{}) {
	if isDone(exited) {
		return
	}
	terminate(cmd.Process)
	select {
	case <-exited:
	case <-time.After(c.opts.StopGrace):
		c.log.Warn("clamd did not stop after SIGTERM; sending SIGKILL", "pid", cmd.Process.Pid, "grace", c.opts.StopGrace.String())
		cmd.Process.Kill()
		<-exited
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// notifyLocked wakes everything waiting for a state change. c.mu is held.
func (c *Clamd) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Clamd) emit(e Event) {
	if c.opts.OnEvent == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	c.opts.OnEvent(e)
}

// readOutput forwards clamd's output to the log and to reload waiters.
func (c *Clamd) readOutput(r io.Reader, tail *tail, pid int) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		tail.add(line)
		c.log.Log(context.Background(), lineLevel(line), line, "source", "clamd", "pid", pid)
		c.mu.Lock()
		for ch := range c.subs {
			select {
			case ch <- line:
			default: // a waiter that fell 256 lines behind misses lines rather than stalling clamd
			}
		}
		c.mu.Unlock()
	}
}

func lineLevel(line string) slog.Level {
	switch {
	case strings.HasPrefix(line, "ERROR:"), strings.HasPrefix(line, "LibClamAV Error:"):
		return slog.LevelError
	case strings.HasPrefix(line, "WARNING:"), strings.HasPrefix(line, "LibClamAV Warning:"):
		return slog.LevelWarn
	case strings.HasPrefix(line, "Database correctly reloaded"), strings.HasPrefix(line, "Activating the newly loaded database"):
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (c *Clamd) subscribe() chan string {
	ch := make(chan string, 256)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	return ch
}

func (c *Clamd) unsubscribe(ch chan string) {
	c.mu.Lock()
	delete(c.subs, ch)
	c.mu.Unlock()
}

var reloadedRE = regexp.MustCompile(`^Database correctly reloaded \((\d+) signatures\)`)

// Reload sends RELOAD and waits for clamd's verdict in its log: "Database
// correctly reloaded (N signatures)" followed by "Activating the newly
// loaded database" returns N (signatures clamd loaded, not the header's
// count); "Database reload failed" returns a *ReloadError; clamd exiting or
// ctx ending first (StartTimeout when ctx has no deadline) returns an error
// saying so. VERSION cannot confirm a
// reload: clamd 1.4 names only the daily database in it.
func (c *Clamd) Reload(ctx context.Context) (int, error) {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	c.mu.Lock()
	p := c.cur
	stopped := c.stopped
	ready := p != nil && p.ready
	c.mu.Unlock()
	if stopped {
		return 0, fmt.Errorf("reload clamd: %w", ErrStopped)
	}
	if !ready {
		return 0, fmt.Errorf("reload clamd: %w (waiting for it to start)", ErrNotRunning)
	}
	if _, ok := ctx.Deadline(); !ok {
		// Loading takes about as long as a start; never wait forever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.StartTimeout)
		defer cancel()
	}
	sub := c.subscribe()
	defer c.unsubscribe(sub)
	if err := c.client.Reload(ctx); err != nil {
		return 0, fmt.Errorf("reload clamd (pid %d): %w", p.pid, err)
	}
	start := time.Now()
	sigs := -1
	var errLines []string
	reason := ""
	for {
		select {
		case line := <-sub:
			switch {
			case reloadedRE.MatchString(line):
				sigs, _ = strconv.Atoi(reloadedRE.FindStringSubmatch(line)[1])
			case strings.HasPrefix(line, "Activating the newly loaded database") && sigs >= 0:
				c.mu.Lock()
				c.sigs, c.lastRel, c.unloaded = sigs, time.Now(), false
				c.mu.Unlock()
				c.log.Info("clamd reload confirmed", "pid", p.pid, "signatures", sigs, "took", time.Since(start).Round(time.Millisecond).String())
				c.emit(Event{Kind: EventReloaded, PID: p.pid, Signatures: sigs})
				return sigs, nil
			case strings.HasPrefix(line, "LibClamAV Error:"):
				errLines = append(errLines, strings.TrimSpace(strings.TrimPrefix(line, "LibClamAV Error:")))
			case strings.HasPrefix(line, "ERROR: reload_th: "):
				reason = strings.TrimPrefix(line, "ERROR: reload_th: ")
			case strings.Contains(line, "Database reload failed"):
				if reason == "" {
					reason = strings.TrimPrefix(line, "WARNING: ")
				}
				re := &ReloadError{Reason: reason, Lines: errLines, EngineUnloaded: !c.concurrentReload()}
				if re.EngineUnloaded {
					c.mu.Lock()
					c.unloaded = true // waitExit arms the self-healing restart
					c.notifyLocked()
					c.mu.Unlock()
				}
				c.log.Error("clamd reload failed", "pid", p.pid, "err", re)
				c.emit(Event{Kind: EventReloadFailed, PID: p.pid, Err: re})
				return 0, re
			}
		case <-p.exited:
			c.mu.Lock()
			last := c.lastExit
			c.mu.Unlock()
			err := fmt.Errorf("reload clamd: clamd (pid %d) exited before confirming the reload: %s", p.pid, last)
			c.emit(Event{Kind: EventReloadFailed, PID: p.pid, Err: err})
			return 0, err
		case <-ctx.Done():
			err := fmt.Errorf("reload clamd (pid %d): no \"Database correctly reloaded\" in its log after %s: %w",
				p.pid, time.Since(start).Round(time.Millisecond), context.Cause(ctx))
			c.emit(Event{Kind: EventReloadFailed, PID: p.pid, Err: err})
			return 0, err
		}
	}
}

// concurrentReload reports whether the generated clamd.conf leaves
// ConcurrentDatabaseReload on (the last setting wins, as in clamd).
func (c *Clamd) concurrentReload() bool {
	on := true
	for _, l := range c.opts.confLines() {
		f := strings.Fields(l)
		if len(f) == 2 && strings.EqualFold(f[0], "ConcurrentDatabaseReload") {
			on = !strings.EqualFold(f[1], "no") && !strings.EqualFold(f[1], "false")
		}
	}
	return on
}

// tail keeps the last n lines of output.
type tail struct {
	mu sync.Mutex
	n  int
	l  []string
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.l = append(t.l, s)
	if len(t.l) > t.n {
		t.l = t.l[len(t.l)-t.n:]
	}
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.l...)
}
