package mirror

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/testutil"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// newPKI makes a fleet CA with a server certificate for 127.0.0.1 and the
// given client certificates, the way `avfleet certs init` does.
func newPKI(t testing.TB, clients ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := tlsutil.InitWith(dir, clients, tlsutil.Options{Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// issueRaw signs a client certificate with the CA in pkiDir from a template
// tlsutil would not produce (expired, ...), writing NAME.crt/NAME.key.
func issueRaw(t testing.TB, pkiDir, name string, notBefore, notAfter time.Time, eku []x509.ExtKeyUsage) {
	t.Helper()
	ca, caKey, err := tlsutil.LoadCA(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter, ExtKeyUsage: eku, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkiDir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkiDir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func testMirrorConfig(t testing.TB, pki string) *config.Mirror {
	c := config.DefaultMirror()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.Listen, c.PlainListen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.TLS = config.TLS{Cert: filepath.Join(pki, "server.crt"), Key: filepath.Join(pki, "server.key"), ClientCA: filepath.Join(pki, "ca.crt")}
	return &c
}

type testDaemon struct {
	*Daemon
	reg        *prometheus.Registry
	pki        string
	stop       func()
	transports []*http.Transport
}

// startDaemon runs a daemon in-process (fake verifier unless v is given)
// until the test ends.
func startDaemon(t *testing.T, v Verifier, tweak func(*config.Mirror, *DaemonOptions)) *testDaemon {
	t.Helper()
	pki := newPKI(t, "node1", "node2")
	cfg := testMirrorConfig(t, pki)
	if v == nil {
		v = &fakeVerifier{}
	}
	reg := prometheus.NewRegistry()
	opt := DaemonOptions{Config: cfg, Verifier: v, Registerer: reg, Gatherer: reg, PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tweak != nil {
		tweak(cfg, &opt)
	}
	d, err := NewDaemon(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	var td *testDaemon
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		// Idle HTTP/2 clients would make graceful shutdown wait for GOAWAY.
		for _, tr := range td.transports {
			tr.CloseIdleConnections()
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("daemon did not stop within 15 s")
		}
	}
	t.Cleanup(stop)
	td = &testDaemon{Daemon: d, reg: reg, pki: pki, stop: stop}
	waitFor(t, "admin listener", func() bool {
		r, err := http.Get("http://" + d.Addr("admin") + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
	return td
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	waitForUpTo(t, 10*time.Second, what, ok)
}

func waitForUpTo(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client returns an HTTPS client presenting NAME.crt from the daemon's PKI
// ("" for none).
func (td *testDaemon) client(t testing.TB, name string) *http.Client {
	t.Helper()
	cert, key := "", ""
	if name != "" {
		cert, key = filepath.Join(td.pki, name+".crt"), filepath.Join(td.pki, name+".key")
	}
	tc, err := tlsutil.ClientConfig(filepath.Join(td.pki, "ca.crt"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 100}
	td.transports = append(td.transports, tr)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (td *testDaemon) url(path string) string { return "https://" + td.Addr("https") + path }

// importFake imports fake files through the daemon's store, as the CLI would.
func (td *testDaemon) importFake(t *testing.T, files ...any) {
	t.Helper()
	if _, err := td.store.Import(context.Background(), writeFiles(t, files...)); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, c *http.Client, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r, b
}

func TestServeFilesLikeAFreshclamMirror(t *testing.T) {
	td := startDaemon(t, nil, nil)
	td.importFake(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"), "test-2.cdiff", fakeCDiff(2, false))
	c := td.client(t, "node1")
	cvdBody := fakeDB("test", 1, cvd.KindCVD, "clamav")
	build := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC) // fake header time of version 1
	cases := []struct {
		name   string
		path   string
		hdr    []string
		status int
		body   []byte
	}{
		{"header range", "/test.cvd", []string{"Range", "bytes=0-9"}, 206, cvdBody[:10]},
		{"up to date", "/test.cvd", []string{"Range", "bytes=0-511", "If-Modified-Since", build.Format(http.TimeFormat)}, 304, nil},
		{"older local copy", "/test.cvd", []string{"Range", "bytes=0-9", "If-Modified-Since", build.Add(-time.Hour).Format(http.TimeFormat)}, 206, cvdBody[:10]},
		{"whole", "/test.cvd", nil, 200, cvdBody},
		{"cld", "/test.cld", nil, 200, fakeDB("test", 2, cvd.KindCLD, "clamav")},
		{"cdiff", "/test-2.cdiff", nil, 200, fakeCDiff(2, false)},
		{"missing cdiff", "/test-3.cdiff", nil, 404, nil},
		{"unknown database", "/daily.cvd", nil, 404, nil},
		{"index is not served", "/index.json", nil, 404, nil},
		{"traversal", "/..%2fstate.db", nil, 404, nil},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			r, b := get(t, c, td.url(cs.path), cs.hdr...)
			if r.StatusCode != cs.status {
				t.Fatalf("status %d, want %d", r.StatusCode, cs.status)
			}
			if cs.body != nil && !bytes.Equal(b, cs.body) {
				t.Fatalf("body %q, want %q", b, cs.body)
			}
		})
	}
	r, _ := get(t, c, td.url("/test.cvd"))
	if lm := r.Header.Get("Last-Modified"); lm != build.Format(http.TimeFormat) {
		t.Errorf("Last-Modified %q, want the header build time %q", lm, build.Format(http.TimeFormat))
	}
	if r.Header.Get("ETag") == "" || r.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("headers %v", r.Header)
	}
	req, _ := http.NewRequest(http.MethodPost, td.url("/test.cvd"), nil)
	if r, err := c.Do(req); err != nil || r.StatusCode != 405 {
		t.Errorf("POST a file: %v %v", r, err)
	}
	// dns.txt: 8 fields, the f-level of the served databases.
	_, b := get(t, c, td.url("/dns.txt"))
	f := strings.Split(strings.TrimSpace(string(b)), ":")
	if len(f) != 8 || f[1] != "0" || f[2] != "0" || f[4] != "0" || f[5] != "90" {
		t.Errorf("dns.txt %q", b)
	}
}

func TestManifestETagAndWatch(t *testing.T) {
	td := startDaemon(t, nil, func(_ *config.Mirror, o *DaemonOptions) { o.WatchTimeout = 300 * time.Millisecond })
	c := td.client(t, "node1")
	r, b := get(t, c, td.url(api.ManifestPath))
	var m api.Manifest
	if err := json.Unmarshal(b, &m); err != nil || r.StatusCode != 200 || len(m.Databases) != 0 {
		t.Fatalf("empty manifest: %d %s %v", r.StatusCode, b, err)
	}
	empty := m.ETag
	td.importFake(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"))
	waitFor(t, "daemon to serve the import", func() bool { return td.bc.load().manifest.ETag != empty })
	r, b = get(t, c, td.url(api.ManifestPath))
	if err := json.Unmarshal(b, &m); err != nil || len(m.Databases) != 1 || r.Header.Get("ETag") != `"`+m.ETag+`"` {
		t.Fatalf("manifest %s, ETag %q", b, r.Header.Get("ETag"))
	}
	d := m.Databases[0]
	if d.Name != "test" || d.Version != 1 || d.Kind != "cvd" || d.Path != "/test.cvd" || d.SHA256 == "" || d.Size == 0 || d.SignedBy != "clamav" || d.CDiffFiles == nil {
		t.Errorf("manifest entry %+v", d)
	}
	if r, _ := get(t, c, td.url(api.ManifestPath), "If-None-Match", `"`+m.ETag+`"`); r.StatusCode != 304 {
		t.Errorf("If-None-Match: %d", r.StatusCode)
	}
	// Stale etag: answered at once.
	start := time.Now()
	if r, _ := get(t, c, td.url(api.WatchPath+"?version="+empty)); r.StatusCode != 200 || time.Since(start) > 200*time.Millisecond {
		t.Errorf("watch with a stale etag: %d after %v", r.StatusCode, time.Since(start))
	}
	// Current etag and nothing happens: 304 after the timeout.
	start = time.Now()
	if r, _ := get(t, c, td.url(api.WatchPath+"?version="+m.ETag)); r.StatusCode != 304 || time.Since(start) < 250*time.Millisecond {
		t.Errorf("idle watch: %d after %v", r.StatusCode, time.Since(start))
	}
}

// TestWatchWakesThousandsAtOnce keeps 2000 watches waiting (over HTTP/2,
// a few connections) and checks one publish answers all of them.
func TestWatchWakesThousandsAtOnce(t *testing.T) {
	td := startDaemon(t, nil, func(_ *config.Mirror, o *DaemonOptions) { o.WatchTimeout = 120 * time.Second })
	td.importFake(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"))
	waitFor(t, "first set", func() bool { return len(td.bc.load().manifest.Databases) == 1 })
	etag := td.bc.load().manifest.ETag
	c := td.client(t, "node1")
	c.Timeout = 150 * time.Second
	// A few HTTP/2 connections (250 streams each), not one dial per request.
	c.Transport.(*http.Transport).MaxConnsPerHost = 16
	n := 2000
	if s := os.Getenv("WATCHN"); s != "" {
		fmt.Sscan(s, &n)
	}
	var wg sync.WaitGroup
	got := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Get(td.url(api.WatchPath + "?version=" + etag))
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			var m api.Manifest
			_ = json.NewDecoder(r.Body).Decode(&m)
			r.Body.Close()
			got <- fmt.Sprintf("%d %d", r.StatusCode, len(m.Databases))
		}()
	}
	setup := time.Now()
	// Generous: 2000 TLS requests on a loaded 2-core machine (or under -race).
	last := time.Now()
	waitForUpTo(t, 90*time.Second, "2000 watchers", func() bool {
		if time.Since(last) > 5*time.Second {
			t.Logf("%v watchers waiting", promtest.ToFloat64(td.metrics.watchers))
			last = time.Now()
		}
		return promtest.ToFloat64(td.metrics.watchers) == float64(n)
	})
	t.Logf("%d watches waiting after %v", n, time.Since(setup))
	start := time.Now()
	td.importFake(t, "acme.cvd", fakeDB("acme", 7, cvd.KindCVD, "key:x"))
	wg.Wait()
	elapsed := time.Since(start)
	close(got)
	bad := 0
	for s := range got {
		if s != "200 2" {
			bad++
			if bad < 5 {
				t.Errorf("watcher got %s", s)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d watchers did not get the new manifest", bad, n)
	}
	t.Logf("one publish answered %d waiting watches in %v (import included)", n, elapsed)
}

func TestNodeReports(t *testing.T) {
	td := startDaemon(t, nil, nil)
	td.importFake(t, "test.cvd", fakeDB("test", 3, cvd.KindCVD, "clamav"))
	waitFor(t, "set", func() bool { return len(td.bc.load().manifest.Databases) == 1 })
	c := td.client(t, "node1")
	post := func(c *http.Client, url, body string) int {
		r, err := c.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	good := `{"node":"node1","agent_version":"0.1","databases":{"test":3},"clamd_version":"ClamAV 1.4.6",
		"last_update":"2026-11-26T05:40:00Z","last_error":"","last_scan":{"files":3,"status":"ok"},"detections":[],"future_field":1}`
	for _, c2 := range []struct {
		name   string
		client *http.Client
		url    string
		body   string
		want   int
	}{
		{"own report", c, td.url("/api/v1/nodes/node1/report"), good, 204},
		{"another node's", c, td.url("/api/v1/nodes/node2/report"), strings.Replace(good, "node1", "node2", 1), 403},
		{"body names another node", c, td.url("/api/v1/nodes/node1/report"), strings.Replace(good, `"node":"node1"`, `"node":"node2"`, 1), 400},
		{"not json", c, td.url("/api/v1/nodes/node1/report"), "{", 400},
		{"version not a number", c, td.url("/api/v1/nodes/node1/report"), `{"node":"node1","databases":{"test":"six"}}`, 400},
		{"too large", c, td.url("/api/v1/nodes/node1/report"), `{"node":"node1","last_error":"` + strings.Repeat("x", api.MaxReportBytes) + `"}`, 413},
		{"plain listener", http.DefaultClient, "http://" + td.Addr("plain") + "/api/v1/nodes/node1/report", good, 403},
	} {
		t.Run(c2.name, func(t *testing.T) {
			if got := post(c2.client, c2.url, c2.body); got != c2.want {
				t.Fatalf("status %d, want %d", got, c2.want)
			}
		})
	}
	if r, _ := get(t, c, td.url("/api/v1/nodes/node1/report")); r.StatusCode != 405 {
		t.Errorf("GET report: %d", r.StatusCode)
	}
	// node2 reports an old version: reporting but not current.
	if got := post(td.client(t, "node2"), td.url("/api/v1/nodes/node2/report"), `{"node":"node2","databases":{"test":2}}`); got != 204 {
		t.Fatalf("node2: %d", got)
	}
	st, err := td.store.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Nodes != (NodeCounts{Total: 2, Reporting: 2, Current: 1}) {
		t.Errorf("status nodes %+v", st.Nodes)
	}
	if v := promtest.ToFloat64(gaugeOf(t, td.reg, "avfleet_mirror_nodes", "state", "current")); v != 1 {
		t.Errorf("metric nodes{state=current} = %v", v)
	}
	recs, _ := td.store.State().NodeReports()
	if len(recs) != 2 || !strings.Contains(string(recs[0].Report), "ClamAV 1.4.6") {
		t.Errorf("stored reports %+v", recs)
	}
}

// gaugeOf finds one series in a registry and returns it as a collector
// testutil can read.
func gaugeOf(t testing.TB, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					v := 0.0
					if m.Gauge != nil {
						v = m.GetGauge().GetValue()
					} else if m.Counter != nil {
						v = m.GetCounter().GetValue()
					}
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(v)
					return g
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return nil
}

func TestMutualTLSRefusesAndCounts(t *testing.T) {
	td := startDaemon(t, nil, nil)
	td.importFake(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"))
	other := newPKI(t, "node1") // another CA, same node name
	now := time.Now()
	issueRaw(t, td.pki, "expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(td.pki, "ca.crt"))
	pool.AppendCertsFromPEM(caPEM)
	clientWith := func(certFile, keyFile string) *http.Client {
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	}
	for _, c := range []struct {
		name, cert, key, reason string
	}{
		{"no certificate", "", "", "no_certificate"},
		{"another CA", filepath.Join(other, "node1.crt"), filepath.Join(other, "node1.key"), "unknown_ca"},
		{"expired", filepath.Join(td.pki, "expired.crt"), filepath.Join(td.pki, "expired.key"), "expired"},
		{"server certificate as client", filepath.Join(td.pki, "server.crt"), filepath.Join(td.pki, "server.key"), "bad_key_usage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := promtest.ToFloat64(td.metrics.tlsFailures.WithLabelValues(c.reason))
			r, err := clientWith(c.cert, c.key).Get(td.url("/test.cvd"))
			if err == nil {
				r.Body.Close()
				t.Fatalf("request succeeded with status %d", r.StatusCode)
			}
			waitFor(t, "failure counted as "+c.reason, func() bool {
				return promtest.ToFloat64(td.metrics.tlsFailures.WithLabelValues(c.reason)) == before+1
			})
		})
	}
	// A TLS 1.1 client is refused too.
	old := &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}
	if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: old}}).Get(td.url("/test.cvd")); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	// The fleet's own node certificate still works.
	if r, _ := get(t, td.client(t, "node1"), td.url("/test.cvd")); r.StatusCode != 200 {
		t.Errorf("valid client: %d", r.StatusCode)
	}
	body := scrape(t, td)
	for _, reason := range []string{"no_certificate", "unknown_ca", "expired", "bad_key_usage"} {
		if !strings.Contains(body, `avfleet_mirror_tls_handshake_failures_total{reason="`+reason+`"} 1`) {
			t.Errorf("/metrics lacks the %s failure", reason)
		}
	}
}

func scrape(t testing.TB, td *testDaemon) string {
	t.Helper()
	r, err := http.Get("http://" + td.Addr("admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func TestAdminEndpointsAndMetrics(t *testing.T) {
	td := startDaemon(t, nil, nil)
	admin := "http://" + td.Addr("admin")
	if r, err := http.Get(admin + "/readyz"); err != nil || r.StatusCode != 503 {
		t.Fatalf("readyz before any import: %v %v", r, err)
	}
	td.importFake(t, "test.cvd", fakeDB("test", 3, cvd.KindCVD, "clamav"), "junk.cvd", []byte("<html>"))
	waitFor(t, "ready", func() bool {
		r, err := http.Get(admin + "/readyz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
	c := td.client(t, "node1")
	get(t, c, td.url("/test.cvd"))
	get(t, c, td.url("/nope.cvd"))
	body := scrape(t, td)
	for _, want := range []string{
		`avfleet_mirror_database_version{database="test"} 3`,
		`avfleet_mirror_database_build_timestamp_seconds{database="test"} 1.7672364e+09`, // fake header time of version 3
		`avfleet_mirror_imports_total{outcome="accepted"} 1`,
		`avfleet_mirror_imports_total{outcome="rejected"} 1`,
		`avfleet_mirror_rejections_total{check="format"} 1`,
		`avfleet_mirror_http_requests_total{class="cvd",code="200"} 1`,
		`avfleet_mirror_http_requests_total{class="cvd",code="404"} 1`,
		`avfleet_mirror_http_response_bytes_total{class="cvd"} ` + fmt.Sprint(len(fakeDB("test", 3, cvd.KindCVD, "clamav"))+len("404 page not found\n")),
		`avfleet_mirror_nodes{state="total"} 0`,
		`avfleet_mirror_ready 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestReloadTLS(t *testing.T) {
	td := startDaemon(t, nil, nil)
	serial := func() string {
		r, err := td.client(t, "node1").Get(td.url("/healthz-none"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.TLS.PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	if err := tlsutil.IssueServer(td.pki, tlsutil.Options{Hosts: []string{"127.0.0.1"}, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if serial() != before {
		t.Fatal("certificate changed before reload")
	}
	if err := td.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if serial() == before {
		t.Fatal("reload did not change the certificate served")
	}
	// A broken file keeps the old certificate.
	os.WriteFile(filepath.Join(td.pki, "server.key"), []byte("garbage"), 0o600)
	if err := td.ReloadTLS(); err == nil {
		t.Fatal("reload of a broken key succeeded")
	}
	serial()
}

func TestDaemonRunsAndStopsParts(t *testing.T) {
	started, stopped := make(chan struct{}), make(chan struct{})
	pki := newPKI(t, "node1")
	cfg := testMirrorConfig(t, pki)
	d, err := NewDaemon(DaemonOptions{Config: cfg, Verifier: &fakeVerifier{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d.Go(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		close(stopped)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Run returned before its part stopped")
	}
}

// TestCertificateExpiry: a server certificate that ends within 30 days is
// warned about at start, --check-config (CheckTLS) says the same, /metrics
// exports when the server certificate and the client CA end, and a renewal
// picked up by SIGHUP (ReloadTLS) shows at once and silences the warning.
func TestCertificateExpiry(t *testing.T) {
	var logs testutil.SyncBuffer
	var cfg *config.Mirror
	td := startDaemon(t, nil, func(c *config.Mirror, o *DaemonOptions) {
		cfg = c
		if err := tlsutil.IssueServer(filepath.Dir(c.TLS.Cert), tlsutil.Options{Hosts: []string{"127.0.0.1"}, Days: 10, Overwrite: true}); err != nil {
			t.Fatal(err)
		}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	const soon = "TLS certificate expires within 30 days: renew it"
	if l := logs.String(); strings.Count(l, soon) != 1 || !strings.Contains(l, "cert=tls.cert") || !strings.Contains(l, "days_left=9") {
		t.Fatalf("start log:\n%s", l)
	}
	server := tlsutil.FirstToExpire(mustCerts(t, cfg.TLS.Cert))
	ca := tlsutil.FirstToExpire(mustCerts(t, cfg.TLS.ClientCA))
	metric := func(cert string, want *x509.Certificate) {
		t.Helper()
		line := fmt.Sprintf(`avfleet_mirror_tls_certificate_expiry_timestamp_seconds{cert=%q} %s`, cert,
			strconvFloat(float64(want.NotAfter.Unix())))
		if body := scrape(t, td); !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	metric("server", server)
	metric("client_ca", ca)

	var check bytes.Buffer
	if err := CheckTLS(cfg, slog.New(slog.NewTextHandler(&check, nil))); err != nil || !strings.Contains(check.String(), soon) {
		t.Fatalf("CheckTLS: %v\n%s", err, check.String())
	}

	// Renewed for 90 days and reloaded: the metric follows, no warning.
	if err := tlsutil.IssueServer(td.pki, tlsutil.Options{Hosts: []string{"127.0.0.1"}, Days: 90, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if err := td.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	renewed := tlsutil.FirstToExpire(mustCerts(t, cfg.TLS.Cert))
	if !renewed.NotAfter.After(server.NotAfter) {
		t.Fatal("renewal did not move NotAfter")
	}
	metric("server", renewed)
	if n := strings.Count(logs.String(), soon); n != 1 {
		t.Errorf("%d warnings after a renewal to 90 days, want still the one", n)
	}
	check.Reset()
	if err := CheckTLS(cfg, slog.New(slog.NewTextHandler(&check, nil))); err != nil || check.Len() != 0 {
		t.Fatalf("CheckTLS after renewal: %v\n%s", err, check.String())
	}

	// Expired (issued as if 3 days ago for 2): a different warning.
	if err := tlsutil.IssueServer(td.pki, tlsutil.Options{Hosts: []string{"127.0.0.1"}, Days: 2, Now: time.Now().AddDate(0, 0, -3), Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if err := CheckTLS(cfg, slog.New(slog.NewTextHandler(&check, nil))); err != nil || !strings.Contains(check.String(), "TLS certificate has expired: peers refuse it; renew it") {
		t.Fatalf("CheckTLS with an expired certificate: %v\n%s", err, check.String())
	}
}

func mustCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	c, err := tlsutil.ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// strconvFloat formats a value the way the Prometheus text format does.
func strconvFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
