package clamdproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/testutil"
)

// managed is a supervisor under test with its Run goroutine.
type managed struct {
	*Clamd
	dbDir  string
	cancel context.CancelFunc
	done   chan error
	events *eventLog
	logBuf *syncBuf
}

type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.ev = append(l.ev, e); l.mu.Unlock() }
func (l *eventLog) kinds() []EventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var k []EventKind
	for _, e := range l.ev {
		k = append(k, e.Kind)
	}
	return k
}

// wait returns the last event of kind, waiting up to d for one: events are
// sent just after the state change that Status and Ready already show.
func (l *eventLog) wait(kind EventKind, d time.Duration) *Event {
	end := time.Now().Add(d)
	for {
		if e := l.last(kind); e != nil || time.Now().After(end) {
			return e
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *eventLog) last(kind EventKind) *Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.ev) - 1; i >= 0; i-- {
		if l.ev[i].Kind == kind {
			e := l.ev[i]
			return &e
		}
	}
	return nil
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startManaged runs a supervisor over the real clamd with test-6.cvd (plus
// any extra databases) and stops it when the test ends.
func startManaged(t *testing.T, mod func(*Options), dbs ...string) *managed {
	t.Helper()
	testutil.NeedCommand(t, "clamd")
	td := testutil.ClamAVTestdata(t)
	dir, err := os.MkdirTemp("", "clamdproc-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	os.Mkdir(db, 0o755)
	for _, name := range append([]string{"test-6.cvd"}, dbs...) {
		copyFile(t, filepath.Join(td, name), filepath.Join(db, name))
	}
	m := &managed{dbDir: db, done: make(chan error, 1), events: &eventLog{}, logBuf: &syncBuf{}}
	o := Options{
		StateDir:    filepath.Join(dir, "state"),
		DatabaseDir: db,
		MaxThreads:  2,
		MinBackoff:  200 * time.Millisecond,
		MaxBackoff:  time.Second,
		StopGrace:   5 * time.Second,
		OnEvent:     m.events.add,
		Logger:      slog.New(slog.NewTextHandler(m.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	m.Clamd = c
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		m.stop(t)
		if t.Failed() {
			t.Logf("supervisor log:\n%s", m.logBuf.String())
		}
	})
	return m
}

func (m *managed) stop(t *testing.T) {
	m.cancel()
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		m.done <- err // stop may be called twice
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of cancel")
	}
}

func (m *managed) ready(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v\n%s", err, m.logBuf.String())
	}
	return m.Status().PID
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead for our purpose, but must also not linger: check it too.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func exists(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

func eicarFile(t *testing.T) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "eicar.com")
	os.WriteFile(p, []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`), 0o644)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func scanEICAR(ctx context.Context, c *clamd.Client, f *os.File) (clamd.Result, error) {
	return c.ScanFD(ctx, f)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestManagedStartPingStop(t *testing.T) {
	m := startManaged(t, nil)
	pid := m.ready(t)
	if !alive(pid) {
		t.Fatalf("clamd pid %d is not running", pid)
	}
	if m.Socket() != "unix://"+filepath.Join(m.opts.StateDir, "clamd.sock") {
		t.Fatalf("Socket() = %q", m.Socket())
	}
	ctx := ctxT(t, 10*time.Second)
	if err := m.Client().Ping(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := m.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bv, err := BinaryVersion(ctx, "clamd")
	if err != nil {
		t.Fatal(err)
	}
	if v.Raw != bv || v.Engine == "" {
		t.Fatalf("VERSION %q, clamd --version %q", v.Raw, bv)
	}
	if r, err := scanEICAR(ctx, m.Client(), eicarFile(t)); err != nil || r.Signature != "Eicar-Test-Signature" {
		t.Fatalf("FILDES EICAR: %+v, %v", r, err)
	}
	// clamd runs as the agent's user (no User line), in its own process group.
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fmt.Sprintf("Uid:\t%d\t", os.Getuid()); !strings.Contains(string(st), uid) {
		t.Fatalf("clamd does not run as uid %d:\n%s", os.Getuid(), st)
	}
	if pgid, _ := syscall.Getpgid(pid); pgid != pid {
		t.Fatalf("clamd's process group is %d, want its own (%d)", pgid, pid)
	}
	conf, _ := os.ReadFile(m.ConfPath())
	if !strings.Contains(string(conf), "LocalSocket "+filepath.Join(m.opts.StateDir, "clamd.sock")) {
		t.Fatalf("clamd.conf:\n%s", conf)
	}

	start := time.Now()
	m.stop(t)
	if exists(pid) {
		t.Fatalf("clamd pid %d still exists after Run returned", pid)
	}
	t.Logf("stopped in %v", time.Since(start))
	if _, err := os.Stat(filepath.Join(m.opts.StateDir, "clamd.sock")); err == nil {
		t.Error("clamd left its socket behind")
	}
	if e := m.Status().LastExit; e == nil || !e.Requested || e.Code != 0 || m.Status().Restarts != 0 {
		t.Fatalf("last exit %+v, restarts %d", e, m.Status().Restarts)
	}
	if err := m.Ready(ctx); !errors.Is(err, ErrStopped) {
		t.Fatalf("Ready after stop: %v", err)
	}
	k := m.events.kinds()
	if len(k) != 3 || k[0] != EventStarted || k[1] != EventReady || k[2] != EventExited {
		t.Fatalf("events %v", k)
	}
}

func TestManagedReload(t *testing.T) {
	testutil.NeedFile(t, "/usr/share/clamav-testfiles/clam.exe")
	m := startManaged(t, nil)
	m.ready(t)
	ctx := ctxT(t, 10*time.Second)
	n, err := m.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// test-6's header says 14 signatures; clamd loads 10 of them.
	if n != 10 {
		t.Fatalf("Reload of test-6.cvd: %d signatures, want 10", n)
	}
	copyFile(t, filepath.Join(testutil.ClamAVTestdata(t), "clamav.hdb"), filepath.Join(m.dbDir, "clamav.hdb"))
	n2, err := m.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n2 != n+1 {
		t.Fatalf("after adding clamav.hdb (1 signature): %d signatures, want %d", n2, n+1)
	}
	if st := m.Status(); st.Signatures != n2 || st.LastReload.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if e := m.events.last(EventReloaded); e == nil || e.Signatures != n2 {
		t.Fatalf("reloaded event %+v", e)
	}
	// The new signature is active: clam.exe is now found by the .hdb one too
	// (ClamAV-Test-File), or still by test-6's; either way it is found.
	f, _ := os.Open("/usr/share/clamav-testfiles/clam.exe")
	defer f.Close()
	r, err := m.Client().ScanFD(ctx, f)
	if err != nil || r.Status != clamd.StatusFound {
		t.Fatalf("clam.exe after reload: %+v, %v", r, err)
	}
}

func TestManagedReloadCorruptKeepsOldDatabase(t *testing.T) {
	m := startManaged(t, nil)
	m.ready(t)
	ctx := ctxT(t, 10*time.Second)
	os.WriteFile(filepath.Join(m.dbDir, "broken.ndb"), []byte("this is not a signature\n"), 0o644)
	_, err := m.Reload(ctx)
	var re *ReloadError
	if !errors.As(err, &re) {
		t.Fatalf("Reload with a corrupt database: %v, want *ReloadError", err)
	}
	if re.EngineUnloaded || !strings.Contains(re.Reason, "Malformed database") || !strings.Contains(strings.Join(re.Lines, " "), "broken.ndb") {
		t.Fatalf("ReloadError %+v", re)
	}
	// ConcurrentDatabaseReload yes (the default): clamd keeps the old engine.
	if r, err := scanEICAR(ctx, m.Client(), eicarFile(t)); err != nil || r.Signature != "Eicar-Test-Signature" {
		t.Fatalf("scan after failed reload: %+v, %v", r, err)
	}
	if m.Status().EngineUnloaded || m.Status().Starts != 1 {
		t.Fatalf("status %+v", m.Status())
	}
	os.Remove(filepath.Join(m.dbDir, "broken.ndb"))
	if n, err := m.Reload(ctx); err != nil || n != 10 {
		t.Fatalf("reload after removing the corrupt file: %d, %v", n, err)
	}
}

// With ConcurrentDatabaseReload no (set when memory is limited), clamd 1.4.6
// frees its engine before loading: a failed reload leaves it answering PING
// but not scanning, and only a restart brings it back.
func TestManagedReloadCorruptUnloadsEngine(t *testing.T) {
	m := startManaged(t, func(o *Options) { o.MemoryLimit = 1 << 30 })
	pid := m.ready(t)
	ctx := ctxT(t, 15*time.Second)
	bad := filepath.Join(m.dbDir, "broken.ndb")
	os.WriteFile(bad, []byte("garbage\n"), 0o644)
	_, err := m.Reload(ctx)
	var re *ReloadError
	if !errors.As(err, &re) || !re.EngineUnloaded {
		t.Fatalf("Reload: %v, want *ReloadError with EngineUnloaded", err)
	}
	if !m.Status().EngineUnloaded {
		t.Fatal("status does not say the engine is unloaded")
	}
	if err := m.Client().Ping(ctx); err != nil {
		t.Fatalf("PING after failed reload: %v", err)
	}
	if r, err := scanEICAR(ctx, m.Client(), eicarFile(t)); !errors.Is(err, clamd.ErrNoReply) {
		t.Fatalf("scan without an engine: %+v, %v; want ErrNoReply (clamd 1.4.6 behaviour changed?)", r, err)
	}
	os.Remove(bad)
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if st.PID == pid || st.Starts != 2 || st.Restarts != 0 || st.EngineUnloaded {
		t.Fatalf("after Restart: %+v (old pid %d)", st, pid)
	}
	if exists(pid) {
		t.Fatalf("old clamd %d still exists", pid)
	}
	if r, err := scanEICAR(ctx, m.Client(), eicarFile(t)); err != nil || r.Status != clamd.StatusFound {
		t.Fatalf("scan after restart: %+v, %v", r, err)
	}
}

func TestManagedUnloadedEngineSelfHeals(t *testing.T) {
	m := startManaged(t, func(o *Options) {
		o.ExtraConf = []string{"ConcurrentDatabaseReload no"}
		o.UnloadedRestart = 500 * time.Millisecond
	})
	pid := m.ready(t)
	ctx := ctxT(t, 15*time.Second)
	bad := filepath.Join(m.dbDir, "broken.ndb")
	os.WriteFile(bad, []byte("garbage\n"), 0o644)
	if _, err := m.Reload(ctx); err == nil {
		t.Fatal("reload of a corrupt set succeeded")
	}
	os.Remove(bad) // what the updater does; it "forgets" to call Restart
	for m.Status().PID == pid || !m.Status().Ready {
		if ctx.Err() != nil {
			t.Fatalf("no restart after the engine was unloaded: %+v", m.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, err := scanEICAR(ctx, m.Client(), eicarFile(t)); err != nil || r.Status != clamd.StatusFound {
		t.Fatalf("scan after self-healing restart: %+v, %v", r, err)
	}
}

func TestManagedRestartAfterKill(t *testing.T) {
	var calls int
	var mu sync.Mutex
	m := startManaged(t, func(o *Options) {
		o.MemoryLimit = 1 << 30
		// A counter that goes up between start and exit: a confirmed OOM kill.
		o.OOMKills = func() (uint64, error) { mu.Lock(); defer mu.Unlock(); calls++; return uint64(calls), nil }
	})
	pid := m.ready(t)
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	for {
		st := m.Status()
		if st.Ready && st.PID != pid {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("clamd not restarted within 10s: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(killed)
	if took > 5*time.Second {
		t.Fatalf("restart took %v", took)
	}
	t.Logf("restarted and ready %v after kill -9", took)
	st := m.Status()
	if st.Restarts != 1 || st.Starts != 2 || st.LastExit == nil {
		t.Fatalf("status %+v", st)
	}
	e := st.LastExit
	if e.Signal != "SIGKILL" || e.Code != -1 || e.Requested || e.OOM != OOMConfirmed || !strings.Contains(e.String(), "OOM killer") {
		t.Fatalf("exit %+v: %s", e, e)
	}
	if ev := m.events.wait(EventExited, time.Second); ev == nil || ev.Exit.PID != pid || ev.Restarts != 1 {
		t.Fatalf("exit event %+v", ev)
	}
	if r, err := scanEICAR(ctx, m.Client(), eicarFile(t)); err != nil || r.Status != clamd.StatusFound {
		t.Fatalf("scan after restart: %+v, %v", r, err)
	}
}

func TestManagedStartFailureBacksOff(t *testing.T) {
	var bad string
	m := startManaged(t, func(o *Options) {
		bad = filepath.Join(o.DatabaseDir, "broken.ndb")
		os.WriteFile(bad, []byte("garbage\n"), 0o644)
	})
	short, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err := m.Ready(short)
	if err == nil || !strings.Contains(err.Error(), "exit code 1") {
		t.Fatalf("Ready with a corrupt database: %v, want an error naming the last exit", err)
	}
	st := m.Status()
	if st.Restarts < 1 || st.LastExit == nil || st.LastExit.Code != 1 ||
		!strings.Contains(strings.Join(st.LastExit.LastLines, "\n"), "Malformed database") {
		t.Fatalf("status %+v", st)
	}
	// Backoff: 200ms, 400ms, 800ms, 1s... (jittered to half): a few starts, not dozens.
	if st.Starts > 6 {
		t.Fatalf("%d starts in 1.5s: no backoff", st.Starts)
	}
	os.Remove(bad)
	m.ready(t)
	if e := m.events.last(EventExited); e == nil || e.Exit.Code != 1 {
		t.Fatalf("exit event %+v", e)
	}
	if e := m.events.wait(EventReady, time.Second); e == nil {
		t.Fatal("no ready event after the database was fixed")
	}
}

func TestRunWithoutBinary(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Options{Binary: "no-such-clamd", StateDir: dir, DatabaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Run: %v", err)
	}
	if err := c.Ready(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Ready: %v", err)
	}
}

// TestNoOrphanWhenAgentDies kills (SIGKILL) a process running the supervisor
// and checks that its clamd dies with it.
func TestNoOrphanWhenAgentDies(t *testing.T) {
	if os.Getenv("CLAMDPROC_HELPER") == "1" {
		return
	}
	testutil.NeedCommand(t, "clamd")
	td := testutil.ClamAVTestdata(t)
	dir, err := os.MkdirTemp("", "clamdproc-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSupervisor$", "-test.v")
	cmd.Env = append(os.Environ(), "CLAMDPROC_HELPER=1", "CLAMDPROC_DIR="+dir, "CLAMDPROC_TD="+td)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pidCh := make(chan int, 1)
	go func() {
		b := make([]byte, 0, 4096)
		buf := make([]byte, 512)
		for {
			n, err := out.Read(buf)
			b = append(b, buf[:n]...)
			if i := bytes.Index(b, []byte("CLAMD_PID=")); i >= 0 {
				if j := bytes.IndexByte(b[i:], '\n'); j > 0 {
					pid, _ := strconv.Atoi(string(b[i+len("CLAMD_PID=") : i+j]))
					pidCh <- pid
					io.Copy(io.Discard, out)
					return
				}
			}
			if err != nil {
				pidCh <- 0
				return
			}
		}
	}()
	var pid int
	select {
	case pid = <-pidCh:
	case <-time.After(15 * time.Second):
		t.Fatal("helper did not report clamd's pid")
	}
	if pid == 0 || !alive(pid) {
		t.Fatalf("helper's clamd (pid %d) is not running", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	end := time.Now().Add(5 * time.Second)
	for exists(pid) && alive(pid) {
		if time.Now().After(end) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("clamd %d survived its supervisor's SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHelperSupervisor is the child process of TestNoOrphanWhenAgentDies.
func TestHelperSupervisor(t *testing.T) {
	if os.Getenv("CLAMDPROC_HELPER") != "1" {
		return
	}
	dir, td := os.Getenv("CLAMDPROC_DIR"), os.Getenv("CLAMDPROC_TD")
	db := filepath.Join(dir, "db")
	os.Mkdir(db, 0o755)
	copyFile(t, filepath.Join(td, "test-6.cvd"), filepath.Join(db, "test-6.cvd"))
	c, err := New(Options{StateDir: filepath.Join(dir, "state"), DatabaseDir: db, MaxThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("CLAMD_PID=%d\n", c.Status().PID)
	time.Sleep(time.Minute) // killed by the parent long before
}

// An OnStart that fails keeps clamd from running at all (it is held by the
// gate until placed), and the start is retried.
func TestManagedOnStartFailure(t *testing.T) {
	var mu sync.Mutex
	fail := true
	var pids []int
	m := startManaged(t, func(o *Options) {
		o.OnStart = func(pid int) error {
			mu.Lock()
			defer mu.Unlock()
			pids = append(pids, pid)
			if fail {
				return errors.New("cgroup is gone")
			}
			return nil
		}
	})
	ctx := ctxT(t, 10*time.Second)
	for m.Status().Starts < 2 {
		if ctx.Err() != nil {
			t.Fatalf("no retry after a failed placement: %+v", m.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	e := m.events.wait(EventStartFailed, time.Second)
	if e == nil || !strings.Contains(e.Err.Error(), "cgroup is gone") {
		t.Fatalf("start_failed event %+v", e)
	}
	if strings.Contains(m.logBuf.String(), "source=clamd") {
		t.Fatalf("clamd ran although it was never placed:\n%s", m.logBuf.String())
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	pid := m.ready(t)
	mu.Lock()
	defer mu.Unlock()
	if pids[len(pids)-1] != pid {
		t.Fatalf("OnStart got pid %d, clamd runs as %d", pids[len(pids)-1], pid)
	}
}
