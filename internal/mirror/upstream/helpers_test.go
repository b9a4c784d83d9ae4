package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/mirror/upstream"
	"github.com/avfleet/avfleet/internal/mirror/upstream/mirrorsink"
	"github.com/avfleet/avfleet/internal/testutil"
)

// request is one request the fake upstream saw.
type request struct {
	Method, Path, Range, IMS, UA string
	Status                       int
	Bytes                        int64 // response body bytes written
}

// fakeUpstream is database.clamav.net in miniature: a static file server
// over the real test databases with Range and If-Modified-Since (Last-Modified
// of a .cvd is its header build time), optionally answering some paths with
// something else.
type fakeUpstream struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	files    map[string][]byte // by path without the leading '/'
	override func(w http.ResponseWriter, r *http.Request) bool
	reqs     []request
}

// stdFiles is upstream holding test-6: /test.cvd, /test-2..6.cdiff and the
// .sign files beside them.
func stdFiles(t *testing.T) map[string][]byte {
	td := testutil.ClamAVTestdata(t)
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(td, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	m := map[string][]byte{"test.cvd": read("test-6.cvd"), "test-6.cvd.sign": read("test-6.cvd.sign")}
	for v := 2; v <= 6; v++ {
		n := fmt.Sprintf("test-%d.cdiff", v)
		m[n] = read(n)
		m[n+".sign"] = read(n + ".sign")
	}
	return m
}

func newFakeUpstream(t *testing.T, useTLS bool, files map[string][]byte) *fakeUpstream {
	f := &fakeUpstream{t: t, files: files}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	if useTLS {
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	return f
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(c.ResponseWriter).Hijack()
}

func (f *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		f.mu.Lock()
		f.reqs = append(f.reqs, request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"),
			IMS: r.Header.Get("If-Modified-Since"), UA: r.Header.Get("User-Agent"), Status: cw.status, Bytes: cw.n})
		f.mu.Unlock()
	}()
	f.mu.Lock()
	override := f.override
	b, ok := f.files[strings.TrimPrefix(r.URL.Path, "/")]
	f.mu.Unlock()
	if override != nil && override(cw, r) {
		return
	}
	if !ok {
		http.NotFound(cw, r)
		return
	}
	mod := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)
	if strings.HasSuffix(r.URL.Path, ".cvd") && len(b) >= cvd.HeaderSize {
		if h, err := cvd.ParseHeader(b[:cvd.HeaderSize]); err == nil && !h.Time.IsZero() {
			mod = h.Time
		}
	}
	cw.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(cw, r, r.URL.Path, mod, bytes.NewReader(b))
}

func (f *fakeUpstream) setFile(name string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b == nil {
		delete(f.files, name)
	} else {
		f.files[name] = b
	}
}

func (f *fakeUpstream) setOverride(o func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override = o
}

func (f *fakeUpstream) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func (f *fakeUpstream) roots() *x509.CertPool {
	if f.srv.Certificate() == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(f.srv.Certificate())
	return p
}

// newStore opens a mirror store in dir with the real verifier, which checks
// .sign files against the test CA, and imports the given test databases.
func newStore(t *testing.T, dir string, imports ...string) *mirror.Store {
	t.Helper()
	td := testutil.ClamAVTestdata(t)
	v, err := mirror.NewVerifier(config.Trust{SignCertsDir: td})
	if err != nil {
		t.Fatal(err)
	}
	st, err := mirror.Open(mirror.Options{DataDir: dir, Retention: config.Retention{CDiffs: 30, Versions: 5}, Verifier: v,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if len(imports) > 0 {
		var paths []string
		for _, n := range imports {
			paths = append(paths, filepath.Join(td, n))
		}
		res, err := st.Import(context.Background(), paths)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Outcome != mirror.Accepted {
				t.Fatalf("import %s: %s %s", r.File, r.Outcome, r.Reason)
			}
		}
	}
	return st
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type syncerOpts struct {
	dnsTXT   string
	resolver upstream.Resolver
	proxy    string
	now      func() time.Time
	reg      prometheus.Registerer
	urls     []string
	roots    *x509.CertPool
	// maxCDiffs and interval as in upstream.Options
	maxCDiffs int
	interval  time.Duration
	timeout   time.Duration // 0: 5 s
}

func newSyncer(t *testing.T, st *mirror.Store, up *fakeUpstream, o syncerOpts) *upstream.Syncer {
	t.Helper()
	urls := o.urls
	if urls == nil {
		urls = []string{up.srv.URL}
	}
	roots := o.roots
	if roots == nil && up != nil {
		roots = up.roots()
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	sink, state := mirrorsink.New(st)
	s, err := upstream.New(upstream.Options{
		Config: config.Upstream{Enabled: true, URLs: urls, Databases: []string{"test"}, ChecksPerDay: 12,
			DNSTXT: o.dnsTXT, Proxy: o.proxy, Timeout: config.Duration(timeout)},
		Sink: sink, State: state, Logger: testLogger(t), Registerer: o.reg, Resolver: o.resolver, RootCAs: roots, Now: o.now,
		MaxCDiffs: o.maxCDiffs, Interval: o.interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func syncOnce(t *testing.T, s *upstream.Syncer) upstream.SyncResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.SyncOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("SyncOnce returned %d results, want 1", len(res))
	}
	t.Logf("sync result: %+v", res[0])
	return res[0]
}

// served returns the version and kind the mirror serves of test.
func served(t *testing.T, st *mirror.Store) (uint, string) {
	t.Helper()
	m, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Databases {
		if d.Name == "test" {
			return d.Version, d.Kind
		}
	}
	return 0, ""
}

// servedHash hashes every file (name and content) of the served set.
func servedHash(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(filepath.Join(dir, "verified"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, p := range names {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fakeResolver serves TXT records from a map and counts lookups.
type fakeResolver struct {
	mu      sync.Mutex
	records map[string][]string
	lookups []string
}

func (r *fakeResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups = append(r.lookups, name)
	if v, ok := r.records[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", name)
}

func (r *fakeResolver) set(name string, recs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.records == nil {
		r.records = map[string][]string{}
	}
	r.records[name] = recs
}

func fileSize(t *testing.T, name string) int64 {
	st, err := os.Stat(filepath.Join(testutil.ClamAVTestdata(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
