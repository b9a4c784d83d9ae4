package report

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestParseSyslogURL(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    SyslogTarget
		wantErr string
	}{
		{in: "udp://logs.example", want: SyslogTarget{Network: "udp", Addr: "logs.example:514", Facility: FacilityDaemon}},
		{in: "tcp://10.0.0.5", want: SyslogTarget{Network: "tcp", Addr: "10.0.0.5:601", Facility: FacilityDaemon}},
		{in: "tls://siem:6514", want: SyslogTarget{Network: "tls", Addr: "siem:6514", Facility: FacilityDaemon}},
		{in: "udp://[::1]:1514?facility=local3", want: SyslogTarget{Network: "udp", Addr: "[::1]:1514", Facility: 19}},
		{in: "tls://siem?ca=/etc/avfleet/siem-ca.pem&cert=/c.pem&key=/k.pem&server_name=siem.corp&facility=auth",
			want: SyslogTarget{Network: "tls", Addr: "siem:6514", Facility: 4, CAFile: "/etc/avfleet/siem-ca.pem",
				CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "siem.corp"}},
		{in: "http://siem:514", wantErr: "scheme must be"},
		{in: "siem:514", wantErr: "scheme must be"},
		{in: "udp://:514", wantErr: "no host"},
		{in: "tcp://siem:70000", wantErr: "not 1..65535"},
		{in: "tcp://siem/path", wantErr: "only scheme://host:port"},
		{in: "tcp://siem?ca=/x", wantErr: "needs tls://"},
		{in: "udp://siem?facility=local9", wantErr: "facility"},
		{in: "udp://siem?color=red", wantErr: "unknown option"},
		{in: "tls://siem?cert=/c.pem", wantErr: "together"},
	} {
		got, err := ParseSyslogURL(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want it to contain %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// startSyslog runs s until the test ends.
func startSyslog(t *testing.T, s *Syslog) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func newTestSyslog(t *testing.T, url string, opts SyslogOptions) *Syslog {
	t.Helper()
	target, err := ParseSyslogURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	s, err := NewSyslog(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

var errBadFrame = errors.New("bad RFC 5425 frame")

// readFrame reads one RFC 5425 frame: MSG-LEN SP SYSLOG-MSG.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var n int
	for i := 0; ; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == ' ' && i > 0 {
			break
		}
		if c < '0' || c > '9' || (i == 0 && c == '0') || i > 6 {
			return nil, fmt.Errorf("%w: MSG-LEN byte %q", errBadFrame, c)
		}
		n = n*10 + int(c-'0')
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// frameServer accepts stream connections on ln and sends every framed
// message it reads to out. The returned stop closes the listener and every
// connection, as a server that goes away would; it also runs at cleanup.
func frameServer(t *testing.T, ln net.Listener, out chan<- []byte) (stop func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					b, err := readFrame(r)
					if err != nil {
						// Connection and handshake errors are the client's
						// business (some tests provoke them); framing is ours.
						if errors.Is(err, errBadFrame) || errors.Is(err, io.ErrUnexpectedEOF) {
							t.Errorf("frame: %v", err)
						}
						return
					}
					out <- b
				}
			}()
		}
	}()
	return stop
}

func receive(t *testing.T, ch <-chan []byte, n int) []syslogMsg {
	t.Helper()
	var out []syslogMsg
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case b := <-ch:
			m, err := parseRFC5424(b)
			if err != nil {
				t.Fatalf("received message is not RFC 5424: %v\n%s", err, b)
			}
			out = append(out, m)
		case <-timeout:
			t.Fatalf("received %d of %d messages", len(out), n)
		}
	}
	return out
}

func checkDetection(t *testing.T, m syslogMsg, d Detection) {
	t.Helper()
	if m.msgID != "DETECTION" || m.appName != "avfleet" || m.hostname != d.Node {
		t.Errorf("header: msgid %q app %q host %q", m.msgID, m.appName, m.hostname)
	}
	for name, want := range map[string]string{
		"node": d.Node, "container": d.Container, "path": d.Path, "container_path": d.ContainerPath,
		"signature": d.Signature, "action": d.Action, "action_result": d.ActionResult,
		"quarantine_id": d.QuarantineID, "scan_id": d.ScanID, "db_versions": versionsString(d.DBVersions),
	} {
		if got, ok := m.param(SDID, name); !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", name, got, ok, want)
		}
	}
}

func testDetection(i int) Detection {
	return Detection{Time: time.Now().UTC(), ScanID: "scan-" + strconv.Itoa(i), Node: "node-7",
		Container: "c0ffee", Path: fmt.Sprintf(`/proc/9/root/srv/f%d "q" \ ].bin`, i), ContainerPath: fmt.Sprintf(`/srv/f%d "q" \ ].bin`, i),
		Signature: "Eicar-Test-Signature", Action: ActionMove, ActionResult: ActionOK, QuarantineID: "q" + strconv.Itoa(i),
		DBVersions: map[string]uint{"daily": 27000, "main": 62}}
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ch := make(chan []byte, 100)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- append([]byte(nil), buf[:n]...)
		}
	}()
	s := newTestSyslog(t, "udp://"+pc.LocalAddr().String()+"?facility=local0", SyslogOptions{})
	startSyslog(t, s)
	for i := range 3 {
		s.Report(t.Context(), testDetection(i))
	}
	msgs := receive(t, ch, 3)
	for i, m := range msgs {
		checkDetection(t, m, testDetection(i))
		if m.facility != 16 || m.severity != int(SeverityWarning) {
			t.Errorf("facility %d severity %d", m.facility, m.severity)
		}
	}
}

func TestSyslogTCPFramingAndOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []byte, 1000)
	frameServer(t, ln, ch)
	s := newTestSyslog(t, "tcp://"+ln.Addr().String(), SyslogOptions{})
	startSyslog(t, s)
	const n = 500
	for i := range n {
		s.Report(t.Context(), testDetection(i))
	}
	for i, m := range receive(t, ch, n) {
		checkDetection(t, m, testDetection(i))
		if seq, _ := m.param("meta", "sequenceId"); seq != strconv.Itoa(i+1) {
			t.Fatalf("message %d has sequenceId %s", i, seq)
		}
	}
	if st := s.Stats(); st.Sent != n || st.Dropped != 0 || st.Connects != 1 {
		t.Errorf("stats %+v", st)
	}
}

// pki is a CA with a server certificate for 127.0.0.1 and a client certificate.
type pki struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test syslog CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", kder)
	}
	p := pki{caFile: write("ca.crt", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("node-7", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func TestSyslogTLS(t *testing.T) {
	p := newPKI(t)
	cert, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	// The server demands a client certificate, as a SIEM collector may.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []byte, 100)
	frameServer(t, ln, ch)

	t.Run("verified", func(t *testing.T) {
		s := newTestSyslog(t, fmt.Sprintf("tls://%s?ca=%s&cert=%s&key=%s", ln.Addr(), p.caFile, p.clientCert, p.clientKey), SyslogOptions{})
		startSyslog(t, s)
		for i := range 5 {
			s.Report(t.Context(), testDetection(i))
		}
		for i, m := range receive(t, ch, 5) {
			checkDetection(t, m, testDetection(i))
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		other := newPKI(t)
		s := newTestSyslog(t, fmt.Sprintf("tls://%s?ca=%s&cert=%s&key=%s", ln.Addr(), other.caFile, p.clientCert, p.clientKey),
			SyslogOptions{FlushTimeout: 100 * time.Millisecond})
		startSyslog(t, s)
		s.Report(t.Context(), testDetection(0))
		waitFor(t, func() bool { return strings.Contains(s.Stats().LastError, "certificate") })
		if st := s.Stats(); st.Sent != 0 || st.Connected {
			t.Errorf("sent over an unverified connection: %+v", st)
		}
		select {
		case b := <-ch:
			t.Errorf("server got %s", b)
		default:
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		// TLS 1.3: the server's rejection comes after the client's handshake.
		s := newTestSyslog(t, fmt.Sprintf("tls://%s?ca=%s", ln.Addr(), p.caFile), SyslogOptions{FlushTimeout: 100 * time.Millisecond})
		startSyslog(t, s)
		s.Report(t.Context(), testDetection(0))
		waitFor(t, func() bool { return strings.Contains(s.Stats().LastError, "certificate required") })
		if st := s.Stats(); st.Sent != 0 {
			t.Errorf("counted as sent over a rejected connection: %+v", st)
		}
	})
	t.Run("bad CA file", func(t *testing.T) {
		target, _ := ParseSyslogURL("tls://127.0.0.1:1?ca=" + p.serverKey)
		if _, err := NewSyslog(target, SyslogOptions{}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Errorf("NewSyslog with a key as CA: %v", err)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSyslogReconnect: the server goes away and comes back on the same
// port; messages sent meanwhile arrive (at least once) after it returns.
func TestSyslogReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ch := make(chan []byte, 100)
	stop := frameServer(t, ln, ch)
	s := newTestSyslog(t, "tcp://"+addr, SyslogOptions{MaxBackoff: 200 * time.Millisecond})
	startSyslog(t, s)
	s.Report(t.Context(), testDetection(0))
	receive(t, ch, 1)

	stop()                            // the server goes away, closing its end
	time.Sleep(50 * time.Millisecond) // the FIN reaches the client
	for i := 1; i <= 5; i++ {
		s.Report(t.Context(), testDetection(i))
	}
	waitFor(t, func() bool { return s.Stats().LastError != "" })

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	frameServer(t, ln2, ch)
	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < 5 {
		select {
		case b := <-ch:
			m, err := parseRFC5424(b)
			if err != nil {
				t.Fatal(err)
			}
			seq, _ := m.param("meta", "sequenceId")
			seen[seq] = true
		case <-deadline:
			t.Fatalf("after reconnect got sequence ids %v, want 2..6", seen)
		}
	}
	for i := 2; i <= 6; i++ {
		if !seen[strconv.Itoa(i)] {
			t.Errorf("message %d lost across the reconnect (got %v)", i, seen)
		}
	}
	if st := s.Stats(); st.Connects < 2 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestSyslogNeverBlocks: with the server down, or up but not reading, Report
// returns at once and drops what does not fit the queue.
func TestSyslogNeverBlocks(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close()

	stuck, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := stuck.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // accepted, never read
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stuck.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})

	for name, addr := range map[string]string{"server down": downAddr, "server not reading": stuck.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			s := newTestSyslog(t, "tcp://"+addr, SyslogOptions{QueueSize: 16, WriteTimeout: 300 * time.Millisecond,
				FlushTimeout: 200 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			startSyslog(t, s)
			d := testDetection(0)
			d.Path = strings.Repeat("x", 7000) // fills socket buffers quickly
			const n = 2000
			start := time.Now()
			for range n {
				s.Report(t.Context(), d)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("%d Report calls took %v", n, el)
			}
			// Every message is accounted for: sent, dropped, queued, or the
			// one being written.
			st := s.Stats()
			if acc := st.Sent + st.Dropped + int64(st.Queued); acc < n-1 || acc > n {
				t.Errorf("stats %+v do not account for %d messages", st, n)
			}
			if st.Dropped < n/2 {
				t.Errorf("stats %+v: want most of %d dropped", st, n)
			}
		})
	}
}

func TestSyslogCloseFlushes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []byte, 100)
	frameServer(t, ln, ch)
	url := "tcp://" + ln.Addr().String()

	t.Run("running", func(t *testing.T) {
		s := newTestSyslog(t, url, SyslogOptions{})
		done := make(chan error, 1)
		go func() { done <- s.Run(context.Background()) }()
		s.Report(t.Context(), testDetection(0))
		waitFor(t, func() bool { return s.Stats().Sent == 1 })
		for i := 1; i < 50; i++ {
			s.Report(t.Context(), testDetection(i))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		receive(t, ch, 50)
		if st := s.Stats(); st.Sent != 50 || st.Dropped != 0 {
			t.Errorf("stats %+v", st)
		}
		s.Report(t.Context(), testDetection(99))
		if st := s.Stats(); st.Dropped != 1 {
			t.Errorf("Report after Close: stats %+v, want 1 dropped", st)
		}
	})
	t.Run("never run", func(t *testing.T) {
		s := newTestSyslog(t, url, SyslogOptions{})
		for i := range 20 {
			s.Report(t.Context(), testDetection(i))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		receive(t, ch, 20)
		if err := s.Run(context.Background()); err == nil {
			t.Error("Run after Close succeeded")
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestSyslogCloseTimesOut(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s := newTestSyslog(t, "tcp://"+addr, SyslogOptions{FlushTimeout: 300 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	defer func() { <-done }()
	for i := range 10 {
		s.Report(t.Context(), testDetection(i))
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Close took %v with FlushTimeout 300ms", el)
	}
	if st := s.Stats(); st.Dropped != 10 || st.Sent != 0 {
		t.Errorf("stats %+v, want 10 dropped", st)
	}
}

func TestSyslogMetrics(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	reg := prometheus.NewPedanticRegistry()
	s := newTestSyslog(t, "udp://"+pc.LocalAddr().String(), SyslogOptions{Registerer: reg})
	startSyslog(t, s)
	s.Report(t.Context(), testDetection(1))
	s.Report(t.Context(), testDetection(2))
	waitFor(t, func() bool { return s.Stats().Sent == 2 })
	want := `
# HELP avfleet_agent_syslog_dropped_total Syslog messages lost: queue full, undeliverable, or queued at shutdown.
# TYPE avfleet_agent_syslog_dropped_total counter
avfleet_agent_syslog_dropped_total 0
# HELP avfleet_agent_syslog_sent_total Syslog messages written to the server.
# TYPE avfleet_agent_syslog_sent_total counter
avfleet_agent_syslog_sent_total 2
`
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want), "avfleet_agent_syslog_sent_total", "avfleet_agent_syslog_dropped_total"); err != nil {
		t.Error(err)
	}
	if _, err := NewSyslog(s.target, SyslogOptions{Registerer: reg}); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}
