package upstream_test

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/upstream"
)

// authProxy is an HTTP proxy that tunnels CONNECT (https upstreams) and
// forwards absolute-URI requests (http upstreams), both only with the right
// Proxy-Authorization: Basic. It records the local address of every
// connection it opens to an upstream, so a test can check that each request
// upstream saw came through it.
type authProxy struct {
	srv  *httptest.Server
	auth string
	tr   *http.Transport

	mu        sync.Mutex
	outbound  map[string]bool
	tunnels   []net.Conn
	connects  int
	forwarded int
	refused   int
}

func newAuthProxy(t *testing.T, user, pass string) *authProxy {
	p := &authProxy{auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)), outbound: map[string]bool{}}
	p.tr = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			p.mu.Lock()
			p.outbound[c.LocalAddr().String()] = true
			p.mu.Unlock()
		}
		return c, err
	}}
	p.srv = httptest.NewServer(p)
	t.Cleanup(func() {
		p.srv.Close()
		p.tr.CloseIdleConnections()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.tunnels {
			c.Close()
		}
	})
	return p
}

func (p *authProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Proxy-Authorization") != p.auth {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		w.Header().Set("Proxy-Authenticate", `Basic realm="test proxy"`)
		http.Error(w, "proxy credentials required", http.StatusProxyAuthRequired)
		return
	}
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.forwarded++
	p.mu.Unlock()
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Proxy-Connection")
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func (p *authProxy) connect(w http.ResponseWriter, r *http.Request) {
	dst, err := net.DialTimeout("tcp", r.Host, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		dst.Close()
		return
	}
	p.mu.Lock()
	p.connects++
	p.outbound[dst.LocalAddr().String()] = true
	p.tunnels = append(p.tunnels, conn, dst)
	p.mu.Unlock()
	conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	go func() {
		defer dst.Close()
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			dst.Write(b)
		}
		io.Copy(dst, conn)
	}()
	go func() {
		defer conn.Close()
		io.Copy(conn, dst)
	}()
}

func (p *authProxy) counts() (connects, forwarded, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connects, p.forwarded, p.refused
}

func (p *authProxy) through(remote string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outbound[remote]
}

// upstream.proxy with credentials: the sync goes through a proxy that
// insists on Proxy-Authorization (CONNECT for https, forwarding for http);
// every request upstream saw came from the proxy. Wrong credentials fail
// with a message naming the 407 and change nothing.
func TestSyncThroughProxy(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			px := newAuthProxy(t, "fleet", "s3cret:/@")
			pxURL := "http://fleet:" + "s3cret%3A%2F%40" + "@" + px.srv.Listener.Addr().String()

			dir := t.TempDir()
			st := newStore(t, dir, "test-1.cvd")
			before := servedHash(t, dir)
			up := newFakeUpstream(t, useTLS, stdFiles(t))
			up.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
				if !px.through(r.RemoteAddr) {
					t.Errorf("%s %s came from %s, not through the proxy", r.Method, r.URL.Path, r.RemoteAddr)
				}
				return false
			})

			wrong := "http://fleet:guess@" + px.srv.Listener.Addr().String()
			r := syncOnce(t, newSyncer(t, st, up, syncerOpts{proxy: wrong}))
			if r.Result != upstream.ResultFailed || !strings.Contains(r.Error, "407") || strings.Contains(r.Error, "guess") {
				t.Fatalf("wrong credentials: %+v; want failed naming the 407, without the password", r)
			}
			if len(up.requests()) != 0 || servedHash(t, dir) != before {
				t.Fatalf("wrong credentials reached upstream or changed the served set")
			}

			r = syncOnce(t, newSyncer(t, st, up, syncerOpts{proxy: pxURL}))
			if r.Result != upstream.ResultUpdated || r.UpstreamVersion != 6 {
				t.Fatalf("through the proxy: %+v, want updated to 6", r)
			}
			connects, forwarded, refused := px.counts()
			t.Logf("proxy: %d CONNECT tunnels, %d forwarded requests, %d refused; upstream saw %d requests", connects, forwarded, refused, len(up.requests()))
			if useTLS && connects == 0 || !useTLS && forwarded != len(up.requests()) {
				t.Errorf("proxy carried %d tunnels and %d requests for %d upstream requests", connects, forwarded, len(up.requests()))
			}
			if refused == 0 {
				t.Errorf("the proxy never refused the wrong credentials")
			}
		})
	}
}

// Run checks on its schedule until its context ends, then returns nil.
func TestRunChecksUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	st := newStore(t, dir, "test-1.cvd")
	up := newFakeUpstream(t, false, stdFiles(t))
	s := newSyncer(t, st, up, syncerOpts{interval: 40 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, q := range up.requests() {
			if q.Status == http.StatusNotModified {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("Run made %d checks answered 304 in 20 s, want 2 after the update", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v, _ := served(t, st); v != 6 {
		t.Errorf("served version %d after Run, want 6", v)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// A download that stops moving is abandoned after upstream.timeout, not
// waited for.
func TestSyncStalledDownload(t *testing.T) {
	dir := t.TempDir()
	st := newStore(t, dir)
	up := newFakeUpstream(t, false, stdFiles(t))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/test.cvd" || r.Header.Get("Range") != "" {
			return false
		}
		b := up.files["test.cvd"]
		w.Header().Set("Content-Length", "9952")
		w.Write(b[:4000])
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	s := newSyncer(t, st, up, syncerOpts{timeout: 300 * time.Millisecond})
	start := time.Now()
	r := syncOnce(t, s)
	if r.Result != upstream.ResultFailed || !strings.Contains(r.Error, "stalled") {
		t.Fatalf("result %+v, want failed naming the stall", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to give up", d)
	}
}
