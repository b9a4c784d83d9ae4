package tlsutil

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func verify(t *testing.T, dir string, c *x509.Certificate, usage x509.ExtKeyUsage) error {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(dir, CACertFile)))
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

func TestInitWritesCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := Init(dir, []string{"mirror.internal", "10.1.2.3", "[fd00::1]"}, []string{"node-1", "web.example"}, 30); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		"ca.crt": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600,
		"node-1.crt": 0o644, "node-1.key": 0o600, "web.example.crt": 0o644, "web.example.key": 0o600,
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		st, _ := e.Info()
		if m, ok := want[e.Name()]; !ok {
			t.Errorf("unexpected file %s (temp file left behind?)", e.Name())
		} else if st.Mode().Perm() != m {
			t.Errorf("%s: mode %v, want %v", e.Name(), st.Mode().Perm(), m)
		}
	}
	if len(got) != len(want) {
		t.Errorf("files %v, want %d files", got, len(want))
	}

	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA || !ca.MaxPathLenZero || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA=%v MaxPathLenZero=%v KeyUsage=%v", ca.IsCA, ca.MaxPathLenZero, ca.KeyUsage)
	}
	if _, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key is %T, want ECDSA", ca.PublicKey)
	}

	srv := readCert(t, filepath.Join(dir, "server.crt"))
	if !slices.Equal(srv.DNSNames, []string{"mirror.internal"}) {
		t.Errorf("server DNS SANs %v", srv.DNSNames)
	}
	var ips []string
	for _, ip := range srv.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"10.1.2.3", "fd00::1"}) {
		t.Errorf("server IP SANs %v", ips)
	}
	if !slices.Equal(srv.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("server ExtKeyUsage %v", srv.ExtKeyUsage)
	}
	if err := verify(t, dir, srv, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("server certificate does not verify as server: %v", err)
	}
	if err := verify(t, dir, srv, x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("server certificate verifies as a client certificate")
	}
	if d := srv.NotAfter.Sub(srv.NotBefore); d < 30*24*time.Hour || d > 30*24*time.Hour+2*time.Hour {
		t.Errorf("server validity %v, want 30 days", d)
	}

	for _, name := range []string{"node-1", "web.example"} {
		c := readCert(t, filepath.Join(dir, name+".crt"))
		if c.Subject.CommonName != name {
			t.Errorf("%s: CN %q", name, c.Subject.CommonName)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Errorf("%s: ExtKeyUsage %v, want clientAuth only", name, c.ExtKeyUsage)
		}
		if err := verify(t, dir, c, x509.ExtKeyUsageClientAuth); err != nil {
			t.Errorf("%s does not verify as client: %v", name, err)
		}
		if err := verify(t, dir, c, x509.ExtKeyUsageServerAuth); err == nil {
			t.Errorf("%s verifies as a server certificate", name)
		}
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
			t.Errorf("%s: key does not match certificate: %v", name, err)
		}
	}
}

func TestInitDefaultsAndRefusal(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	srv := readCert(t, filepath.Join(dir, "server.crt"))
	var ips []string
	for _, ip := range srv.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(srv.DNSNames, []string{"localhost"}) || !slices.Equal(ips, []string{"127.0.0.1", "::1"}) {
		t.Errorf("default SANs DNS=%v IP=%v", srv.DNSNames, ips)
	}
	if d := srv.NotAfter.Sub(srv.NotBefore); d < DefaultDays*24*time.Hour {
		t.Errorf("default validity %v, want %d days", d, DefaultDays)
	}

	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	err := Init(dir, nil, []string{"n1"}, 0)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "ca.crt")) {
		t.Errorf("error does not name the file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "n1.crt")); err == nil {
		t.Error("refused Init still wrote n1.crt")
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	if !bytes.Equal(caBefore, caAfter) {
		t.Fatal("refused Init replaced ca.key")
	}
	if err := InitWith(dir, nil, Options{Overwrite: true, KeyType: RSA3072}); err != nil {
		t.Fatal(err)
	}
	caAfter, _ = os.ReadFile(filepath.Join(dir, "ca.key"))
	if bytes.Equal(caBefore, caAfter) {
		t.Fatal("Overwrite did not replace ca.key")
	}
	if _, ok := readCert(t, filepath.Join(dir, "server.crt")).PublicKey.(*rsa.PublicKey); !ok {
		t.Error("KeyType rsa did not give an RSA server key")
	}
}

func TestInitRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hosts   []string
		clients []string
		days    int
		want    string
	}{
		{"bad host", []string{"mirror internal"}, nil, 0, `host "mirror internal" is neither`},
		{"host with port", []string{"mirror:6501"}, nil, 0, `host "mirror:6501" is neither`},
		{"client with slash", nil, []string{"../etc"}, 0, `client name "../etc"`},
		{"client empty", nil, []string{""}, 0, `client name ""`},
		{"client ca", nil, []string{"ca"}, 0, `reserved`},
		{"client server", nil, []string{"server"}, 0, `reserved`},
		{"client twice", nil, []string{"a", "a"}, 0, `client "a" given twice`},
		{"too long", nil, nil, 20000, `longer than the CA's`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Init(dir, tc.hosts, tc.clients, tc.days)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files written despite the error: %v", ents)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, "late-node", 10); err != nil {
		t.Fatal(err)
	}
	c := readCert(t, filepath.Join(dir, "late-node.crt"))
	if c.Subject.CommonName != "late-node" || verify(t, dir, c, x509.ExtKeyUsageClientAuth) != nil {
		t.Errorf("issued certificate CN %q does not verify", c.Subject.CommonName)
	}
	if st, _ := os.Stat(filepath.Join(dir, "late-node.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	if err := Issue(dir, "late-node", 10); !errors.Is(err, ErrExists) {
		t.Errorf("second Issue: %v, want ErrExists", err)
	}
	if err := IssueWith(dir, "late-node", Options{Overwrite: true}); err != nil {
		t.Errorf("Issue with Overwrite: %v", err)
	}
	if c2 := readCert(t, filepath.Join(dir, "late-node.crt")); c2.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("Overwrite kept the old certificate")
	}
	if err := Issue(dir, "server", 1); err == nil {
		t.Error("Issue accepted the reserved name server")
	}
	if err := Issue(t.TempDir(), "n", 1); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("Issue without a CA: %v", err)
	}

	// A CA key that does not belong to ca.crt must be noticed, not used.
	other := t.TempDir()
	if err := Init(other, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	k, _ := os.ReadFile(filepath.Join(other, "ca.key"))
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), k, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, "n2", 1); err == nil || !strings.Contains(err.Error(), "does not belong to") {
		t.Errorf("mismatched CA key: %v", err)
	}
}

// testServer accepts TLS connections with cfg, reports each handshake's
// result and greets a verified client with its name.
type testServer struct {
	addr    string
	results chan error
}

func startServer(t *testing.T, cfg *tls.Config) *testServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), results: make(chan error, 16)}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			err = tc.Handshake()
			if err == nil {
				cs := tc.ConnectionState()
				name, perr := PeerName(&cs)
				if perr != nil {
					name = "-"
				}
				fmt.Fprintf(tc, "hello %s\n", name)
			}
			s.results <- err
			tc.Close()
		}
	}()
	return s
}

// dial connects with cfg and reads the greeting; with TLS 1.3 a refused
// client certificate only shows on the first read, so this always reads.
func (s *testServer) dial(cfg *tls.Config) (greeting string, clientErr, serverErr error) {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = "localhost"
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr, cfg)
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		greeting, err = bufio.NewReader(c).ReadString('\n')
		c.Close()
	}
	select {
	case serverErr = <-s.results:
	case <-time.After(5 * time.Second):
		serverErr = errors.New("test: no handshake result from the server")
	}
	return strings.TrimSpace(greeting), err, serverErr
}

func clientCfg(t *testing.T, caDir, certDir, name string) *tls.Config {
	t.Helper()
	cert, key := "", ""
	if name != "" {
		cert, key = filepath.Join(certDir, name+".crt"), filepath.Join(certDir, name+".key")
	}
	c, err := ClientConfig(filepath.Join(caDir, CACertFile), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMutualTLS(t *testing.T) {
	dir, otherDir, expiredDir := t.TempDir(), t.TempDir(), t.TempDir()
	if err := Init(dir, nil, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := Init(otherDir, nil, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	// The same CA, a certificate that expired yesterday.
	for _, f := range []string{CACertFile, CAKeyFile} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		os.WriteFile(filepath.Join(expiredDir, f), b, 0o600)
	}
	if err := IssueWith(expiredDir, "node1", Options{Days: 2, Now: time.Now().AddDate(0, 0, -3)}); err != nil {
		t.Fatal(err)
	}

	cfg, _, err := ServerConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", cfg.MinVersion)
	}
	srv := startServer(t, cfg)

	cases := []struct {
		name     string
		client   *tls.Config
		accepted bool
		why      string // the server's reason for refusing
	}{
		{"good client", clientCfg(t, dir, dir, "node1"), true, ""},
		{"no certificate", clientCfg(t, dir, dir, ""), false, "didn't provide a certificate"},
		{"certificate from another CA", clientCfg(t, dir, otherDir, "node1"), false, "signed by unknown authority"},
		{"expired certificate", clientCfg(t, dir, expiredDir, "node1"), false, "certificate has expired"},
		{"server certificate used as client", clientCfg(t, dir, dir, "server"), false, "incompatible key usage"},
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/TLS%x", tc.name, v), func(t *testing.T) {
				c := tc.client.Clone()
				c.MaxVersion = v
				greeting, cerr, serr := srv.dial(c)
				if tc.accepted {
					if cerr != nil || serr != nil || greeting != "hello node1" {
						t.Fatalf("refused: client %v, server %v, greeting %q", cerr, serr, greeting)
					}
					return
				}
				if serr == nil || !strings.Contains(serr.Error(), tc.why) {
					t.Fatalf("server handshake error %v, want %q (greeting %q)", serr, tc.why, greeting)
				}
				if cerr == nil {
					t.Fatalf("client saw no error (greeting %q)", greeting)
				}
				t.Logf("refused: server: %v; client: %v", serr, cerr)
			})
		}
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		c := clientCfg(t, dir, dir, "node1")
		c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if _, cerr, serr := srv.dial(c); cerr == nil || serr == nil {
			t.Fatalf("TLS 1.1 accepted: client %v server %v", cerr, serr)
		}
	})
}

func TestClientRefusesWrongServer(t *testing.T) {
	dir, otherDir := t.TempDir(), t.TempDir()
	if err := Init(dir, nil, []string{"node1", "node2"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := Init(otherDir, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, certDir, cert, serverName, want string
	}{
		{"server from another CA", otherDir, "server", "localhost", "unknown authority"},
		{"client certificate as server", dir, "node2", "localhost", "failed to verify certificate"},
		{"name not in SANs", dir, "server", "mirror.internal", "mirror.internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := ServerConfig(filepath.Join(tc.certDir, tc.cert+".crt"), filepath.Join(tc.certDir, tc.cert+".key"), filepath.Join(dir, CACertFile))
			if err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, cfg)
			c := clientCfg(t, dir, dir, "node1")
			c.ServerName = tc.serverName
			_, cerr, _ := srv.dial(c)
			if cerr == nil || !strings.Contains(cerr.Error(), tc.want) {
				t.Fatalf("client error %v, want it to contain %q", cerr, tc.want)
			}
		})
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt")
	cfg, r, err := ServerConfig(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	serial := func() string {
		t.Helper()
		c := clientCfg(t, dir, dir, "node1")
		var got string
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			got = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		}
		if _, cerr, serr := srv.dial(c); cerr != nil || serr != nil {
			t.Fatalf("handshake: client %v server %v", cerr, serr)
		}
		return got
	}
	first := serial()
	if first != r.Certificate().SerialNumber.String() {
		t.Fatalf("served serial %s, Reloader says %s", first, r.Certificate().SerialNumber)
	}

	if err := IssueServer(dir, Options{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != first {
		t.Fatalf("new certificate served before Reload")
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	second := serial()
	if second == first {
		t.Fatal("Reload did not pick up the new server certificate")
	}

	// A broken file is reported and the running certificate stays.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("Reload with a broken key: %v", err)
	}
	if got := serial(); got != second {
		t.Fatal("a failed Reload changed the served certificate")
	}

	// Client CA rotation: a node of a new CA is refused until the client CA
	// file lists both CAs and the server reloads.
	newDir := t.TempDir()
	if err := Init(newDir, nil, []string{"node9"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := IssueServer(dir, Options{Overwrite: true}); err != nil { // repair the key
		t.Fatal(err)
	}
	if _, cerr, serr := srv.dial(clientCfg(t, dir, newDir, "node9")); cerr == nil || serr == nil {
		t.Fatal("node of the new CA accepted before the client CA was extended")
	}
	oldCA, _ := os.ReadFile(caFile)
	newCA, _ := os.ReadFile(filepath.Join(newDir, "ca.crt"))
	if err := os.WriteFile(caFile, append(oldCA, newCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if g, cerr, serr := srv.dial(clientCfg(t, dir, newDir, "node9")); cerr != nil || serr != nil || g != "hello node9" {
		t.Fatalf("node of the new CA after reload: %q client %v server %v", g, cerr, serr)
	}
	if g, cerr, serr := srv.dial(clientCfg(t, dir, dir, "node1")); cerr != nil || serr != nil || g != "hello node1" {
		t.Fatalf("node of the old CA after reload: %q client %v server %v", g, cerr, serr)
	}
}

func TestServerWithoutClientCA(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := ServerConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	// Legacy mode: anyone may connect, and nobody has a verified identity.
	for _, name := range []string{"", "node1"} {
		g, cerr, serr := srv.dial(clientCfg(t, dir, dir, name))
		if cerr != nil || serr != nil || g != "hello -" {
			t.Errorf("client %q: greeting %q, client %v, server %v", name, g, cerr, serr)
		}
	}
}

func TestHTTPPeerName(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := ServerConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, err := RequestPeerName(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			fmt.Fprintf(w, "%s %s", name, r.Proto)
		}),
		TLSConfig: cfg,
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Shutdown(context.Background()) })

	cc := clientCfg(t, dir, dir, "node1")
	tr := &http.Transport{TLSClientConfig: cc, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://localhost:" + portOf(ln.Addr()) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "node1 HTTP/2.0" {
		t.Fatalf("response %q, want the peer name over HTTP/2", body)
	}

	if _, err := RequestPeerName(&http.Request{}); !errors.Is(err, ErrNoPeer) {
		t.Errorf("plain request: %v", err)
	}
}

func portOf(a net.Addr) string { _, p, _ := net.SplitHostPort(a.String()); return p }

func TestClientConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, []string{"n"}, 0); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("not pem"), 0o644)
	for _, tc := range []struct {
		name, ca, cert, key, want string
	}{
		{"missing CA", filepath.Join(dir, "nope.crt"), "", "", "nope.crt"},
		{"CA without certificates", empty, "", "", "no PEM certificate"},
		{"cert without key", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "n.crt"), "", "both be set"},
		{"key of another cert", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "n.crt"), filepath.Join(dir, "server.key"), "n.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClientConfig(tc.ca, tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, _, err := ServerConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), empty); err == nil || !strings.Contains(err.Error(), "client CA") {
		t.Errorf("ServerConfig with a bad client CA: %v", err)
	}
}
