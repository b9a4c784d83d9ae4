package mirrorsink_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/mirror/mirrortest"
	"github.com/avfleet/avfleet/internal/mirror/upstream"
	"github.com/avfleet/avfleet/internal/mirror/upstream/mirrorsink"
	"github.com/avfleet/avfleet/internal/testutil"
)

// syncMirrorEnv makes the test binary, re-executed, run a syncing mirror
// (see runSyncMirror) on the mirror.yaml it names.
const syncMirrorEnv = "AVFLEET_TEST_SYNC_MIRROR"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(syncMirrorEnv); cfg != "" {
		os.Exit(runSyncMirror(cfg))
	}
	os.Exit(m.Run())
}

// runSyncMirror is `avfleet mirror serve` with upstream sync, wired as
// cmd/avfleet wires it (mirror.NewDaemon, mirrorsink, upstream.New,
// Daemon.Go), except that upstream is checked every 20 ms instead of
// checks_per_day times: the test wants a sync in progress whenever it kills.
func runSyncMirror(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := config.LoadMirror(path)
	if err != nil {
		log.Error("config", "err", err)
		return 2
	}
	d, err := mirror.NewDaemon(mirror.DaemonOptions{Config: cfg, Logger: log, PollInterval: 50 * time.Millisecond})
	if err != nil {
		log.Error("daemon", "err", err)
		return 2
	}
	sink, state := mirrorsink.New(d.Store())
	s, err := upstream.New(upstream.Options{Config: cfg.Upstream, Sink: sink, State: state, Logger: log, Interval: 20 * time.Millisecond})
	if err != nil {
		log.Error("upstream", "err", err)
		return 2
	}
	d.Go(s.Run)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := d.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// scenario is what the test upstream holds in one round: /test.cvd is
// test-<version>.cvd, /test-N.cdiff for N in 2..version (with their .sign
// files), except a missing one (the sync falls back to the full CVD), a
// corrupted one (rejected, then the same fallback), or test.cvd itself
// replaced by an HTML error page (rejected).
type scenario struct {
	version, missing, corrupt uint
	htmlCVD                   bool
}

func (s scenario) String() string {
	return fmt.Sprintf("upstream at %d (missing cdiff %d, corrupt cdiff %d, html cvd %v)", s.version, s.missing, s.corrupt, s.htmlCVD)
}

// slowUpstream serves a scenario from the real test databases, slowly
// (512-byte writes 2 ms apart), so a kill often lands mid-download.
type slowUpstream struct {
	td       string
	mu       sync.Mutex
	sc       scenario
	inFlight atomic.Int32
	requests atomic.Int64
}

func (u *slowUpstream) set(sc scenario) {
	u.mu.Lock()
	u.sc = sc
	u.mu.Unlock()
}

type slowWriter struct{ http.ResponseWriter }

func (w slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 512)
		m, err := w.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		http.NewResponseController(w.ResponseWriter).Flush()
		p = p[k:]
		time.Sleep(2 * time.Millisecond)
	}
	return n, nil
}

func (u *slowUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.inFlight.Add(1)
	defer u.inFlight.Add(-1)
	u.requests.Add(1)
	u.mu.Lock()
	sc := u.sc
	u.mu.Unlock()
	name := strings.TrimPrefix(r.URL.Path, "/")
	file := ""
	var v uint
	switch {
	case name == "test.cvd":
		file = fmt.Sprintf("test-%d.cvd", sc.version)
	case name == fmt.Sprintf("test-%d.cvd.sign", sc.version):
		file = name
	case strings.HasPrefix(name, "test-") && (strings.HasSuffix(name, ".cdiff") || strings.HasSuffix(name, ".cdiff.sign")):
		if _, err := fmt.Sscanf(name, "test-%d.cdiff", &v); err == nil && v >= 2 && v <= sc.version && v != sc.missing {
			file = name
		}
	}
	if file == "" {
		http.NotFound(w, r)
		return
	}
	b, err := os.ReadFile(filepath.Join(u.td, file))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	mod := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)
	switch {
	case name == "test.cvd" && sc.htmlCVD:
		b = []byte("<html><body><h1>503 Service Unavailable</h1></body></html>\n")
	case name == "test.cvd":
		if h, err := cvd.ParseHeader(b[:cvd.HeaderSize]); err == nil {
			mod = h.Time
		}
	case strings.HasSuffix(name, ".cdiff") && v == sc.corrupt:
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0x20
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(slowWriter{w}, r, name, mod, bytes.NewReader(b))
}

// syncProc is one run of the syncing mirror.
type syncProc struct {
	cmd  *exec.Cmd
	log  *testutil.SyncBuffer
	done chan struct{}
}

func (p *syncProc) output() string { return p.log.String() }

func (p *syncProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// TestKill9DuringSyncs kills a syncing mirror with SIGKILL at random moments,
// at least 50 times, while it downloads from upstream, verifies, patches and
// publishes (cdiff chains, a missing or corrupted cdiff with the fallback to
// the full CVD, a CDN error page, starts from nothing and from test-1). After
// every restart each served file must verify and match the manifest, and
// the mirror must go on to reach what upstream has.
func TestKill9DuringSyncs(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	up := &slowUpstream{td: td}
	srv := httptest.NewServer(up)
	defer srv.Close()

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := l.Addr().String()
	l.Close()
	cfgPath := filepath.Join(dir, "mirror.yaml")
	y := fmt.Sprintf("data_dir: %s\nlisten: \"\"\nadmin_listen: \"\"\nplain_listen: %q\ntrust: {sign_certs_dir: %s}\n"+
		"upstream: {enabled: true, urls: [%q], databases: [test], dns_txt: \"\", checks_per_day: 12, timeout: 5s}\n",
		data, plain, td, srv.URL)
	if err := os.WriteFile(cfgPath, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + plain
	client := &http.Client{Timeout: 10 * time.Second}

	start := func() *syncProc {
		t.Helper()
		p := &syncProc{log: &testutil.SyncBuffer{}, done: make(chan struct{})}
		p.cmd = exec.Command(self, "-test.run=^$")
		p.cmd.Env = append(os.Environ(), syncMirrorEnv+"="+cfgPath)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.cmd.Wait(); close(p.done) }()
		t.Cleanup(p.kill)
		deadline := time.Now().Add(15 * time.Second)
		for {
			if _, err := mirrortest.Manifest(client, base); err == nil {
				return p
			}
			select {
			case <-p.done:
				t.Fatalf("syncing mirror exited at start:\n%s", p.output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("syncing mirror not serving after 15 s:\n%s", p.output())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// seed gives a fresh data directory, empty or holding test-1 or test-3.
	seedData := func() {
		t.Helper()
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		from := []string{"", "test-1.cvd", "test-1.cvd", "test-3.cvd"}[rng.Intn(4)]
		if from == "" {
			return
		}
		v, err := mirror.NewVerifier(config.Trust{SignCertsDir: td})
		if err != nil {
			t.Fatal(err)
		}
		st, err := mirror.Open(mirror.Options{DataDir: data, Retention: config.Retention{CDiffs: 30, Versions: 5}, Verifier: v})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if res, err := st.Import(context.Background(), []string{filepath.Join(td, from)}); err != nil || res[0].Outcome != mirror.Accepted {
			t.Fatalf("seed %s: %+v %v", from, res, err)
		}
	}
	pick := func() scenario {
		sc := scenario{version: uint(2 + rng.Intn(5))}
		switch rng.Intn(6) {
		case 0:
			sc.missing = uint(2 + rng.Intn(int(sc.version)-1))
		case 1:
			sc.corrupt = uint(2 + rng.Intn(int(sc.version)-1))
		case 2:
			sc.htmlCVD = true
		}
		return sc
	}

	const rounds = 50
	began := time.Now()
	var midDownload, requeued int
	var served uint
	seedData()
	up.set(pick())
	p := start()
	for i := 0; i < rounds; i++ {
		sc := pick()
		if served >= 4 || i%8 == 7 {
			// Start over now and then, so there is sync work to interrupt.
			p.kill()
			seedData()
			up.set(sc)
			p = start()
		} else {
			up.set(sc)
		}
		time.Sleep(time.Duration(rng.Intn(250)) * time.Millisecond)
		if up.inFlight.Load() > 0 {
			midDownload++
		}
		p.kill()
		p = start()
		requeued += strings.Count(p.output(), "requeued file from an interrupted verification")
		man := mirrortest.CheckServedSet(t, client, base, nil)
		if t.Failed() {
			t.Fatalf("round %d (seed %d, %s): served set inconsistent after a SIGKILL\nlog of the restarted mirror:\n%s", i, seed, sc, p.output())
		}
		served = 0
		for _, d := range man.Databases {
			served = d.Version
		}
	}
	// Not wedged: with a clean upstream, the mirror reaches version 6.
	up.set(scenario{version: 6})
	deadline := time.Now().Add(20 * time.Second)
	for served != 6 {
		if time.Now().After(deadline) {
			t.Fatalf("after the kills the mirror does not reach upstream's version 6 (serves %d):\n%s", served, p.output())
		}
		time.Sleep(20 * time.Millisecond)
		man, err := mirrortest.Manifest(client, base)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range man.Databases {
			served = d.Version
		}
	}
	mirrortest.CheckServedSet(t, client, base, nil)
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if p.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("the syncing mirror exited with %v after SIGTERM:\n%s", p.cmd.ProcessState, p.output())
	}
	if midDownload == 0 {
		t.Error("no SIGKILL landed during a download from upstream: the test proved less than it should")
	}
	t.Logf("%d SIGKILLs of a syncing mirror in %v (%d upstream requests): %d during a download, %d mid-verification (file requeued); every restart served a complete verified set",
		rounds, time.Since(began).Round(time.Millisecond), up.requests.Load(), midDownload, requeued)
}
