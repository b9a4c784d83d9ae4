package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/testutil"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// eicar is built at run time so that no file of the repository is detected.
var eicar = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")

// pki makes a fleet CA, a server certificate for loopback and client
// certificates for the given node names.
func pki(t testing.TB, nodes ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := tlsutil.Init(dir, []string{"127.0.0.1", "localhost"}, nodes, 0); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testMirror is the real mirror daemon, run in-process.
type testMirror struct {
	t       testing.TB
	cfg     *config.Mirror
	d       *mirror.Daemon
	addr    string
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// freePort reserves a loopback port, so a mirror can be restarted on it.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startMirror(t testing.TB, certs, dataDir, listen string) *testMirror {
	t.Helper()
	return startMirrorWith(t, certs, dataDir, listen, nil)
}

// startMirrorWith also trusts the organisation keys in cvdKeys (PEM files).
func startMirrorWith(t testing.TB, certs, dataDir, listen string, cvdKeys []string) *testMirror {
	t.Helper()
	c := config.DefaultMirror()
	c.Trust.CVDKeys = cvdKeys
	c.DataDir = dataDir
	c.Listen, c.AdminListen = listen, ""
	c.TLS = config.TLS{Cert: filepath.Join(certs, "server.crt"), Key: filepath.Join(certs, "server.key"), ClientCA: filepath.Join(certs, "ca.crt")}
	m := &testMirror{t: t, cfg: &c}
	var err error
	m.d, err = mirror.NewDaemon(mirror.DaemonOptions{Config: &c, Logger: testLogger(t, "mirror"), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m.addr = m.d.Addr("https")
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() { m.done <- m.d.Run(ctx) }()
	t.Cleanup(m.stop)
	return m
}

func (m *testMirror) stop() {
	if m.stopped {
		return
	}
	m.stopped = true
	m.cancel()
	select {
	case err := <-m.done:
		if err != nil {
			m.t.Errorf("mirror: %v", err)
		}
	case <-time.After(20 * time.Second):
		m.t.Error("mirror did not stop within 20 s")
	}
}

// importFiles is `avfleet mirror import` of ClamAV test files.
func (m *testMirror) importFiles(names ...string) {
	m.t.Helper()
	td := testutil.ClamAVTestdata(m.t)
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(td, n))
	}
	m.importPaths(paths...)
}

// importPaths is `avfleet mirror import` of any files.
func (m *testMirror) importPaths(paths ...string) {
	m.t.Helper()
	res, err := m.d.Store().Import(context.Background(), paths)
	if err != nil {
		m.t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != mirror.Accepted {
			m.t.Fatalf("import %s: %s %s", r.File, r.Outcome, r.Reason)
		}
	}
}

// agentConfig is an agent.yaml for node against the mirror at addr. The state
// dir is short: clamd's socket lives there and its path must fit 107 bytes.
func agentConfig(t testing.TB, certs, node, addr string) *config.Agent {
	t.Helper()
	state, err := os.MkdirTemp("", "avf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	c := config.DefaultAgent()
	c.NodeName = node
	c.StateDir = state
	c.Mirror.URLs = []string{"https://" + addr}
	c.Mirror.CA = filepath.Join(certs, "ca.crt")
	c.Mirror.Cert = filepath.Join(certs, node+".crt")
	c.Mirror.Key = filepath.Join(certs, node+".key")
	c.Mirror.Timeout = config.Duration(5 * time.Second)
	c.Clamd.Binary = testutil.NeedCommand(t, "clamd")
	c.Scan.Schedule.Interval = "disabled"
	c.Report.MetricsListen = "127.0.0.1:0"
	return &c
}

// runningAgent is an agent daemon run in-process.
type runningAgent struct {
	*Agent
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startAgent(t testing.TB, cfg *config.Agent, tweak func(*Options)) *runningAgent {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o := Options{Config: cfg, Logger: testLogger(t, "agent"), Registry: reg,
		BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second, ClamdBackoff: 200 * time.Millisecond}
	if tweak != nil {
		tweak(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() { ra.stop(t) })
	return ra
}

// stop is SIGTERM: Run must return nil with clamd stopped.
func (ra *runningAgent) stop(t testing.TB) error {
	ra.once.Do(func() {
		ra.cancel()
		select {
		case ra.err = <-ra.done:
		case <-time.After(30 * time.Second):
			ra.err = fmt.Errorf("agent did not stop within 30 s")
		}
		if ra.err != nil {
			t.Errorf("agent Run: %v", ra.err)
		}
	})
	return ra.err
}

// waitReady waits for clamd to answer through the agent.
func (ra *runningAgent) waitReady(t testing.TB, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if c := ra.Clamd(); c != nil {
		if err := c.Ready(ctx); err != nil {
			t.Fatalf("clamd not ready: %v", err)
		}
	}
	for ctx.Err() == nil {
		if ra.clamdCli.Ping(ctx) == nil && len(ra.Updater().Status().Installed) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("agent not ready")
}

// scan sends data to the agent's clamd (INSTREAM) and returns the signature
// found, "" when clean.
func scan(t testing.TB, addr string, data []byte) string {
	t.Helper()
	c, err := clamd.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.ScanStream(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("scan through clamd at %s: %v", addr, err)
	}
	return r.Signature
}

// eventually polls ok until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

// metric reads one series (labels as "k=v" pairs) from a registry; -1 when absent.
func metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return value(m)
		}
	}
	return -1
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// canary returns the bytes of a body signature of test.ndb in the given
// test CVD (PROVENANCE.md: Win.Worm.Klez-1 from version 6), read from the
// CVD itself at test time.
func canary(t testing.TB, cvdName, sig string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(testutil.ClamAVTestdata(t), cvdName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(512, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no test.ndb: %v", cvdName, err)
		}
		if h.Name != "test.ndb" {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.SplitN(line, ":", 5)
			if len(f) >= 4 && f[0] == sig {
				data, err := hex.DecodeString(f[3])
				if err != nil {
					t.Fatalf("%s in %s: %v", sig, cvdName, err)
				}
				return data
			}
		}
		t.Fatalf("%s not in %s's test.ndb", sig, cvdName)
	}
}

// testLogger logs to the test's output, tagged with who logs.
func testLogger(t testing.TB, who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(&tlog{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", who)
}

type tlog struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *tlog) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Logging after the test ended panics in testing; drop late lines.
	defer func() { _ = recover() }()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func itoa(n int) string { return strconv.Itoa(n) }
