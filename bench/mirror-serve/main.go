//go:build linux

// Command mirror-serve measures the mirror's HTTPS serving path (run by
// bench/mirror-serve.sh; see there). It drives the real `avfleet mirror
// serve` and, for comparison, Debian's nginx on the same file with the same
// certificates, and writes a markdown section with the results.
//
//   - poll: many mutual-TLS clients, one HTTP/1.1 keep-alive connection
//     each, asking what an up-to-date node asks: the manifest with
//     If-None-Match and /{db}.cvd with If-Modified-Since (both 304). Every
//     byte each connection carries is counted below TLS (a net.Conn wrapper
//     under crypto/tls), so the cost of an up-to-date check on the wire and
//     of the handshake are measured, not estimated.
//   - download: parallel downloaders fetching the same big CVD over TLS
//     (again one keep-alive connection each), against avfleet and nginx in
//     alternating rounds; body bytes per second in a fixed window.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

var (
	avfleetBin = flag.String("avfleet", "", "the avfleet binary (required)")
	nginxBin   = flag.String("nginx", "", "the nginx binary; empty: no comparison")
	work       = flag.String("work", "", "working directory; the generated CVD is kept there between runs (required)")
	out        = flag.String("out", "", "write the markdown section here (default stdout)")

	cvdMiB = flag.Int("cvd-mib", 100, "the served CVD must be at least this many MiB")

	pollClients  = flag.Int("poll-clients", 1000, "concurrent clients in the poll test")
	pollDuration = flag.Duration("poll-duration", time.Minute, "how long the poll test runs after the ramp")
	pollRamp     = flag.Duration("poll-ramp", 5*time.Second, "clients start spread over this time")
	pollThink    = flag.Duration("poll-think", time.Second, "mean pause between a client's checks (uniform in [0, 2x])")

	dlClients = flag.Int("dl-clients", 50, "parallel downloaders")
	dlWindow  = flag.Duration("dl-window", 20*time.Second, "measured window of each download round")
	dlWarm    = flag.Duration("dl-warm", 3*time.Second, "unmeasured start of each round")
	dlRounds  = flag.Int("dl-rounds", 5, "rounds per server (alternating)")
	dlOnly    = flag.String("dl-only", "", "run only the download test against this server (avfleet or nginx), for profiling")
)

const dbName = "bench"

func main() {
	flag.Parse()
	if *avfleetBin == "" || *work == "" {
		log.Fatal("mirror-serve: -avfleet and -work are required")
	}
	log.SetFlags(log.Ltime)
	ctx := context.Background()
	dir, err := filepath.Abs(*work)
	if err != nil {
		log.Fatal(err)
	}
	b := &bench{dir: dir}
	b.prepare()
	m := b.startMirror()
	defer m.stop()

	var md strings.Builder
	if *dlOnly == "" {
		p := b.poll(ctx, "https://"+b.mirrorAddr, m)
		b.writePoll(&md, p)
	}
	var ng *proc
	if *nginxBin != "" && *dlOnly != "avfleet" {
		ng = b.startNginx()
		defer ng.stop()
	}
	targets := []target{{"avfleet", b.mirrorAddr, m}}
	if ng != nil {
		targets = append(targets, target{"nginx", b.nginxAddr, ng})
	}
	if *dlOnly != "" {
		targets = slices.DeleteFunc(targets, func(t target) bool { return t.name != *dlOnly })
	}
	d := b.downloads(ctx, targets)
	b.writeDownloads(&md, d, ng != nil)
	if *out == "" {
		fmt.Print(md.String())
		return
	}
	if err := os.WriteFile(*out, []byte(md.String()), 0o644); err != nil {
		log.Fatal(err)
	}
}

type bench struct {
	dir        string
	pki        string
	cvdPath    string
	cvdSize    int64
	cvdSHA256  string
	buildTime  time.Time
	mirrorAddr string
	nginxAddr  string
	etag       string
	setDir     string // the published set nginx serves from
}

func (b *bench) path(p ...string) string { return filepath.Join(append([]string{b.dir}, p...)...) }

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	if o, err := cmd.CombinedOutput(); err != nil {
		log.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, o)
	}
}

// prepare generates signature data, builds and signs the CVD (kept between
// runs), makes a fresh PKI and mirror data directory and imports the CVD.
func (b *bench) prepare() {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		log.Fatal(err)
	}
	b.cvdPath = b.path(dbName + ".cvd")
	if st, err := os.Stat(b.cvdPath); err != nil || st.Size() < int64(*cvdMiB)<<20 {
		log.Printf("generating signature data and building a CVD of at least %d MiB with avfleet cvd build", *cvdMiB)
		// Hex text compresses about 2:1; a little more than twice the target.
		gen(b.path("bench.hdb"), b.path("bench.ndb"), int64(*cvdMiB)<<20*23/10)
		os.Remove(b.path("bench.key"))
		os.Remove(b.path("bench.pub.pem"))
		run(*avfleetBin, "keys", "generate", "-o", b.path("bench"))
		run(*avfleetBin, "cvd", "build", "--key", b.path("bench.key"), "--name", dbName, "--version", "1",
			"-o", b.cvdPath, b.path("bench.hdb"), b.path("bench.ndb"))
		os.Remove(b.path("bench.hdb"))
		os.Remove(b.path("bench.ndb"))
	}
	f, err := os.Open(b.cvdPath)
	if err != nil {
		log.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	if n < int64(*cvdMiB)<<20 {
		log.Fatalf("%s is %d bytes, want at least %d MiB", b.cvdPath, n, *cvdMiB)
	}
	b.cvdSize, b.cvdSHA256 = n, hex.EncodeToString(h.Sum(nil))
	hdr := make([]byte, cvd.HeaderSize)
	f, _ = os.Open(b.cvdPath)
	io.ReadFull(f, hdr)
	f.Close()
	hd, err := cvd.ParseHeader(hdr)
	if err != nil {
		log.Fatal(err)
	}
	b.buildTime = hd.Time

	b.pki = b.path("pki")
	os.RemoveAll(b.pki)
	run(*avfleetBin, "certs", "init", "--dir", b.pki, "--host", "127.0.0.1", "--client", "bench")
	os.RemoveAll(b.path("data"))
	ports := freePorts(3)
	b.mirrorAddr, b.nginxAddr = ports[0], ports[2]
	y := fmt.Sprintf("data_dir: %s\nlisten: %q\nadmin_listen: %q\ntls: {cert: %s, key: %s, client_ca: %s}\ntrust: {cvd_keys: [%s]}\n",
		b.path("data"), ports[0], ports[1], filepath.Join(b.pki, "server.crt"), filepath.Join(b.pki, "server.key"),
		filepath.Join(b.pki, "ca.crt"), b.path("bench.pub.pem"))
	if err := os.WriteFile(b.path("mirror.yaml"), []byte(y), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("importing %s (%d bytes) into the mirror", b.cvdPath, b.cvdSize)
	run(*avfleetBin, "mirror", "import", "--config", b.path("mirror.yaml"), b.cvdPath)
	b.setDir, err = filepath.EvalSymlinks(b.path("data", "verified"))
	if err != nil {
		log.Fatal(err)
	}
}

// gen writes ClamAV-like signature text (random MD5s and hex patterns, names
// from a small vocabulary) of about total bytes into two files.
func gen(hdb, ndb string, total int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	plat := strings.Fields("Win Unix Doc Html Js Pdf Xls Andr Osx Email Txt Java Php Multios")
	cat := strings.Fields("Trojan Malware Exploit Downloader Dropper Coinminer Phishing Ransomware Worm Adware Packed Keylogger Spyware Backdoor")
	fam := strings.Fields("Agent Emotet Qakbot Mirai Gafgyt Zbot Ramnit Sality Virut Tofsee Nanocore Remcos Lokibot Formbook Redline Vidar Ursnif Dridex")
	const hexd = "0123456789abcdef"
	hexs := func(buf []byte, n int) []byte {
		for i := 0; i < n; i++ {
			buf = append(buf, hexd[rng.IntN(16)])
		}
		return buf
	}
	for i, p := range []string{hdb, ndb} {
		f, err := os.Create(p)
		if err != nil {
			log.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var line []byte
		for written := int64(0); written < total/2; written += int64(len(line)) {
			name := fmt.Sprintf("%s.%s.%s-%d-%d", plat[rng.IntN(len(plat))], cat[rng.IntN(len(cat))], fam[rng.IntN(len(fam))], rng.IntN(9999999), rng.IntN(9))
			line = line[:0]
			if i == 0 {
				line = hexs(line, 32)
				line = fmt.Appendf(line, ":%d:%s:73\n", rng.IntN(5000000)+100, name)
			} else {
				line = fmt.Appendf(line, "%s:%d:*:", name, rng.IntN(4))
				line = hexs(line, 40+rng.IntN(80))
				line = append(line, '\n')
			}
			w.Write(line)
		}
		if err := w.Flush(); err != nil {
			log.Fatal(err)
		}
		f.Close()
	}
}

func freePorts(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}

// proc is a server process this program started (killed with it).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(name string, logFile string, args ...string) *proc {
	lf, err := os.Create(logFile)
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(p.done) }()
	return p
}

// stop asks politely (SIGTERM; nginx: fast shutdown), then kills.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// cpuSeconds is the user+system CPU time of p and its children (nginx's
// workers), from /proc.
func (p *proc) cpuSeconds() float64 {
	pids := []string{fmt.Sprint(p.cmd.Process.Pid)}
	if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid)); err == nil {
		pids = append(pids, strings.Fields(string(kids))...)
	}
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces): state is
		// field 3, utime 14, stime 15.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			var u, s int64
			fmt.Sscan(f[11], &u)
			fmt.Sscan(f[12], &s)
			ticks += u + s
		}
	}
	return float64(ticks) / 100 // USER_HZ
}

func (b *bench) startMirror() *proc {
	p := start("avfleet", b.path("mirror.log"), *avfleetBin, "mirror", "serve", "--config", b.path("mirror.yaml"))
	c := b.client(1)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.Get("https://" + b.mirrorAddr + api.ManifestPath)
		if err == nil {
			var m api.Manifest
			err = json.NewDecoder(r.Body).Decode(&m)
			r.Body.Close()
			if err == nil && len(m.Databases) == 1 {
				b.etag = m.ETag
				return p
			}
		}
		select {
		case <-p.done:
			log.Fatalf("avfleet mirror serve exited at start; see %s", b.path("mirror.log"))
		default:
		}
		if time.Now().After(deadline) {
			log.Fatalf("avfleet mirror serve not serving after 20 s: %v; see %s", err, b.path("mirror.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startNginx runs nginx as root with its own prefix, pid and logs, the same
// certificates and client CA, serving the mirror's published set.
func (b *bench) startNginx() *proc {
	dir := b.path("nginx")
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		log.Fatal(err)
	}
	conf := fmt.Sprintf(`# written by bench/mirror-serve
user root;
worker_processes %d;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[2]s/tmp/body;
	proxy_temp_path %[2]s/tmp/proxy;
	fastcgi_temp_path %[2]s/tmp/fastcgi;
	default_type application/octet-stream;
	sendfile on;
	keepalive_requests 1000000;
	keepalive_timeout 120s;
	server {
		listen %[3]s ssl;
		ssl_certificate %[4]s/server.crt;
		ssl_certificate_key %[4]s/server.key;
		ssl_client_certificate %[4]s/ca.crt;
		ssl_verify_client on;
		ssl_protocols TLSv1.2 TLSv1.3;
		root %[5]s;
		location / { }
	}
}
`, runtime.NumCPU(), dir, b.nginxAddr, b.pki, b.setDir)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		log.Fatal(err)
	}
	p := start("nginx", filepath.Join(dir, "stderr.log"), *nginxBin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", cf)
	c := b.client(1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := c.Head("https://" + b.nginxAddr + "/" + dbName + ".cvd")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 && r.ContentLength == b.cvdSize {
				return p
			}
			err = fmt.Errorf("HEAD: %s, %d bytes", r.Status, r.ContentLength)
		}
		select {
		case <-p.done:
			log.Fatalf("nginx exited at start; see %s", dir)
		default:
		}
		if time.Now().After(deadline) {
			log.Fatalf("nginx not serving after 10 s: %v; see %s", err, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsConfig is an agent's TLS configuration with the bench client
// certificate, HTTP/1.1 only (one connection per client, as an agent).
func (b *bench) tlsConfig() *tls.Config {
	tc, err := tlsutil.ClientConfig(filepath.Join(b.pki, "ca.crt"), filepath.Join(b.pki, "bench.crt"), filepath.Join(b.pki, "bench.key"))
	if err != nil {
		log.Fatal(err)
	}
	tc.NextProtos = []string{"http/1.1"}
	return tc
}

func (b *bench) client(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig(), MaxConnsPerHost: conns,
		MaxIdleConnsPerHost: conns, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
}

// countConn counts the bytes of a TCP connection in each direction: what
// crosses the wire (TLS records included), not what HTTP sees.
type countConn struct {
	net.Conn
	in, out    atomic.Int64
	serverEOF  atomic.Bool // the server closed it
	clientDone atomic.Bool // the client closed it
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	if err == io.EOF {
		c.serverEOF.Store(true)
	}
	return n, err
}

func (c *countConn) Close() error {
	if !c.serverEOF.Load() {
		c.clientDone.Store(true)
	}
	return c.Conn.Close()
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// dialer makes the TLS connections of one client and remembers them with
// their handshake cost.
type dialer struct {
	cfg   *tls.Config
	mu    sync.Mutex
	conns []*countConn
	hs    []handshake
}

type handshake struct {
	in, out int64
	dur     time.Duration
	state   tls.ConnectionState
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	t0 := time.Now()
	raw, err := (&net.Dialer{Timeout: 30 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cc := &countConn{Conn: raw}
	cfg := d.cfg.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(addr)
	tc := tls.Client(cc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, cc)
	d.hs = append(d.hs, handshake{in: cc.in.Load(), out: cc.out.Load(), dur: time.Since(t0), state: tc.ConnectionState()})
	d.mu.Unlock()
	return tc, nil
}

func (d *dialer) current() *countConn {
	cc, _ := d.last()
	return cc
}

// last is the newest connection and its handshake.
func (d *dialer) last() (*countConn, handshake) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.conns) == 0 {
		return nil, handshake{}
	}
	return d.conns[len(d.conns)-1], d.hs[len(d.hs)-1]
}

func (d *dialer) transport(conns int) *http.Transport {
	return &http.Transport{DialTLSContext: d.dial, MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns,
		IdleConnTimeout: 5 * time.Minute, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
}

// exchange is one request and its response as seen on the wire.
type exchange struct {
	kind    int // 0 manifest, 1 cvd
	first   bool
	in, out int64
	lat     time.Duration
}

type pollResult struct {
	clients, conns, requests, errors int
	// connections replaced during the test, by who closed the old one
	closedByServer, closedByClient int
	firstErrs                      []string
	ex                             []exchange
	hs                             []handshake
	elapsed                        time.Duration
	serverCPU                      float64 // seconds, after the ramp
	windowRequests                 int64   // requests answered after the ramp
}

// poll runs the up-to-date check test: each client keeps one keep-alive
// connection and asks, in a loop with a random pause, for the manifest with
// If-None-Match and for /bench.cvd with If-Modified-Since. Anything but 304
// is an error.
func (b *bench) poll(ctx context.Context, base string, server *proc) pollResult {
	n := *pollClients
	log.Printf("poll: %d clients, ramp %v, then %v, think %v", n, *pollRamp, *pollDuration, *pollThink)
	res := pollResult{clients: n}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var answered atomic.Int64
	began := time.Now()
	end := began.Add(*pollRamp + *pollDuration)
	ims := b.buildTime.UTC().Format(http.TimeFormat)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			time.Sleep(time.Duration(int64(*pollRamp) * int64(i) / int64(n)))
			d := &dialer{cfg: b.tlsConfig()}
			tr := d.transport(1)
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			var ex []exchange
			var errs []string
			reqs := []*http.Request{}
			for kind, path := range []string{api.ManifestPath, "/" + dbName + ".cvd"} {
				r, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
				if kind == 0 {
					r.Header.Set("If-None-Match", `"`+b.etag+`"`)
				} else {
					r.Header.Set("If-Modified-Since", ims)
				}
				reqs = append(reqs, r)
			}
			for time.Now().Before(end) {
				for kind, r := range reqs {
					var in0, out0 int64
					cc0 := d.current()
					if cc0 != nil {
						in0, out0 = cc0.in.Load(), cc0.out.Load()
					}
					t0 := time.Now()
					resp, err := c.Do(r)
					if err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != http.StatusNotModified {
							err = fmt.Errorf("%s: %s, want 304", r.URL.Path, resp.Status)
						}
					}
					lat := time.Since(t0)
					answered.Add(1)
					if err != nil {
						errs = append(errs, err.Error())
						time.Sleep(100 * time.Millisecond)
						continue
					}
					cc, hs := d.last()
					e := exchange{kind: kind, lat: lat}
					if cc != cc0 {
						// A new connection: its handshake is counted on its own
						// line; what is left includes the session tickets.
						e.first, e.lat = true, lat-hs.dur
						e.in, e.out = cc.in.Load()-hs.in, cc.out.Load()-hs.out
					} else {
						e.in, e.out = cc.in.Load()-in0, cc.out.Load()-out0
					}
					ex = append(ex, e)
				}
				time.Sleep(time.Duration(rng.Int64N(int64(2**pollThink) + 1)))
			}
			d.mu.Lock()
			for _, cc := range d.conns[:max(0, len(d.conns)-1)] {
				if cc.serverEOF.Load() {
					res.closedByServer++
				} else if cc.clientDone.Load() {
					res.closedByClient++
				}
			}
			d.mu.Unlock()
			mu.Lock()
			res.ex = append(res.ex, ex...)
			res.hs = append(res.hs, d.hs...)
			res.conns += len(d.hs)
			res.errors += len(errs)
			for _, e := range errs {
				if len(res.firstErrs) < 5 {
					res.firstErrs = append(res.firstErrs, e)
				}
			}
			mu.Unlock()
		}()
	}
	var cpu0, cpu1 float64
	var n0, n1 int64
	time.Sleep(time.Until(began.Add(*pollRamp)))
	cpu0, n0 = server.cpuSeconds(), answered.Load()
	time.Sleep(time.Until(end))
	cpu1, n1 = server.cpuSeconds(), answered.Load()
	res.serverCPU, res.windowRequests = cpu1-cpu0, n1-n0
	wg.Wait()
	res.elapsed = time.Since(began)
	res.requests = len(res.ex) + res.errors
	log.Printf("poll: %d requests, %d errors, %d connections", res.requests, res.errors, res.conns)
	return res
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p/100+0.5) - 1
	return d[max(0, min(i, len(d)-1))]
}

func median64(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func (b *bench) writePoll(md *strings.Builder, p pollResult) {
	var lat, hsLat []time.Duration
	var bytes [2][]int64
	var total [2]struct{ in, out, n int64 }
	var firstExtra []int64
	for _, e := range p.ex {
		if e.first {
			firstExtra = append(firstExtra, e.in+e.out)
			continue
		}
		lat = append(lat, e.lat)
		bytes[e.kind] = append(bytes[e.kind], e.in+e.out)
		total[e.kind].in += e.in
		total[e.kind].out += e.out
		total[e.kind].n++
	}
	var hsIn, hsOut []int64
	for _, h := range p.hs {
		hsLat = append(hsLat, h.dur)
		hsIn = append(hsIn, h.in)
		hsOut = append(hsOut, h.out)
	}
	slices.Sort(lat)
	slices.Sort(hsLat)
	meanBytes := func(k int) (float64, float64) {
		if total[k].n == 0 {
			return 0, 0
		}
		return float64(total[k].out) / float64(total[k].n), float64(total[k].in) / float64(total[k].n)
	}
	mOut, mIn := meanBytes(0)
	cOut, cIn := meanBytes(1)
	var maxB [2]int64
	for k := range bytes {
		if len(bytes[k]) > 0 {
			maxB[k] = slices.Max(bytes[k])
		}
	}
	medManifest, medCVD := median64(bytes[0]), median64(bytes[1])
	var cipher string
	if len(p.hs) > 0 {
		st := p.hs[0].state
		cipher = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite) + ", key exchange " + st.CurveID.String()
	}
	secs := (*pollDuration + *pollRamp).Seconds()
	ok := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	fmt.Fprintf(md, "### Up-to-date checks: %d mutual-TLS clients for %v\n\n", p.clients, *pollDuration)
	fmt.Fprintf(md, "Each client: one HTTP/1.1 keep-alive connection with its client certificate; in a loop, `GET %s`\n", api.ManifestPath)
	fmt.Fprintf(md, "with `If-None-Match` (the current etag) then `GET /%s.cvd` with `If-Modified-Since` (its build time),\n", dbName)
	fmt.Fprintf(md, "both expected to be `304`, then a pause uniform in [0, %v]. Clients start spread over %v.\n", 2**pollThink, *pollRamp)
	fmt.Fprintf(md, "Bytes are counted on each TCP connection under TLS (records, headers and tags included).\n\n")
	fmt.Fprintf(md, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(md, "| requests (both kinds) | %d in %.0f s (%.0f/s) |\n", p.requests, secs, float64(p.requests)/secs)
	fmt.Fprintf(md, "| errors (transport errors or not 304) | **%d** |\n", p.errors)
	if p.windowRequests > 0 {
		fmt.Fprintf(md, "| server CPU after the ramp | %.0f %% of a core, %.0f µs per request |\n",
			100*p.serverCPU/pollDuration.Seconds(), 1e6*p.serverCPU/float64(p.windowRequests))
	}
	reopened := ""
	if p.conns != p.clients {
		reopened = fmt.Sprintf("; %d replaced, old one closed by the server %d, by the client's http.Transport %d", p.conns-p.clients, p.closedByServer, p.closedByClient)
	}
	fmt.Fprintf(md, "| TCP+TLS connections opened | %d (one per client: %s%s) |\n", p.conns, ok(p.conns == p.clients), reopened)
	fmt.Fprintf(md, "| latency p50 / p90 / p99 / max (ms) | %s / %s / %s / %s |\n", ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99)), ms(pct(lat, 100)))
	fmt.Fprintf(md, "| manifest check on the wire (request + 304), median / max | **%d** / %d bytes (mean %.0f out + %.0f in) |\n", medManifest, maxB[0], mOut, mIn)
	fmt.Fprintf(md, "| `/%s.cvd` check on the wire (request + 304), median / max | **%d** / %d bytes (mean %.0f out + %.0f in) |\n", dbName, medCVD, maxB[1], cOut, cIn)
	fmt.Fprintf(md, "| TLS handshake on the wire (client certificate included), median | %d bytes (%d out + %d in), %s |\n",
		median64(slices.Clone(hsIn))+median64(slices.Clone(hsOut)), median64(hsOut), median64(hsIn), cipher)
	fmt.Fprintf(md, "| first exchange's extra bytes (session tickets after the handshake; none for a client without a session cache, as agents), median | %d bytes |\n",
		median64(firstExtra)-medManifest)
	fmt.Fprintf(md, "| handshake time (dial to done) p50 / p99 (ms) | %s / %s |\n\n", ms(pct(hsLat, 50)), ms(pct(hsLat, 99)))
	fmt.Fprintf(md, "- zero errors: %s; an up-to-date check under 1 KB: %s (manifest %d B, CVD %d B, the largest seen %d B)\n",
		ok(p.errors == 0), ok(maxB[0] < 1024 && maxB[1] < 1024), medManifest, medCVD, max(maxB[0], maxB[1]))
	fmt.Fprintf(md, "\nA check is one TLS record each way: the request line and headers (the client's User-Agent, Host,\n"+
		"the condition) and a 304 with Date, ETag and Cache-Control, each with 22 bytes of TLS record header and tag\n"+
		"(TCP/IP headers are not counted). The handshake, once per connection, is larger: both certificates and, with Go 1.24 or newer on both ends, the post-quantum\n"+
		"hybrid key share. Latencies are measured by clients that share the cores with the server.\n")
	for _, e := range p.firstErrs {
		fmt.Fprintf(md, "- error: %s\n", e)
	}
	fmt.Fprintln(md)
}

// dlRound is one download round against one server.
type dlRound struct {
	server     string
	bytesPerS  float64
	downloads  int
	errors     int
	firstErr   string
	conns      int
	cipher     string
	verifiedOK bool
	cpuPerGB   float64 // server CPU seconds per GB (1e9 bytes) in the window
}

// target is a server under test.
type target struct {
	name, addr string
	p          *proc
}

func (b *bench) downloads(ctx context.Context, targets []target) []dlRound {
	var out []dlRound
	for round := 0; round < *dlRounds; round++ {
		for _, t := range targets {
			r := b.download(ctx, t)
			log.Printf("download round %d %s: %.1f MB/s, server CPU %.2f s/GB, %d complete downloads, %d errors (%s)",
				round+1, t.name, r.bytesPerS/1e6, r.cpuPerGB, r.downloads, r.errors, r.cipher)
			out = append(out, r)
		}
	}
	return out
}

// download runs dl-clients downloaders in a loop for dl-warm + dl-window and
// counts the body bytes received inside the window. Each downloader's first
// complete download is hashed and compared with the CVD's SHA-256.
func (b *bench) download(ctx context.Context, t target) dlRound {
	url := "https://" + t.addr + "/" + dbName + ".cvd"
	r := dlRound{server: t.name, verifiedOK: true}
	var got atomic.Int64
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(ctx, *dlWarm+*dlWindow)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < *dlClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &dialer{cfg: b.tlsConfig()}
			tr := d.transport(1)
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			buf := make([]byte, 256<<10)
			hashed := false
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := c.Do(req)
				var n int64
				var sum string
				if err == nil {
					var h io.Writer = io.Discard
					sh := sha256.New()
					if !hashed {
						h = sh
					}
					for {
						k, rerr := resp.Body.Read(buf)
						if k > 0 {
							h.Write(buf[:k])
							n += int64(k)
							got.Add(int64(k))
						}
						if rerr != nil {
							if rerr != io.EOF {
								err = rerr
							}
							break
						}
					}
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("%s", resp.Status)
					}
					if !hashed {
						sum = hex.EncodeToString(sh.Sum(nil))
					}
				}
				if ctx.Err() != nil {
					break // the window closed mid-download: not an error
				}
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				if err != nil || n != b.cvdSize {
					r.errors++
					if r.firstErr == "" {
						r.firstErr = fmt.Sprintf("%v (%d of %d bytes)", err, n, b.cvdSize)
					}
				} else {
					r.downloads++
					if !hashed {
						hashed = true
						if sum != b.cvdSHA256 {
							r.verifiedOK = false
						}
					}
				}
				mu.Unlock()
			}
			mu.Lock()
			r.conns += len(d.hs)
			if r.cipher == "" && len(d.hs) > 0 {
				st := d.hs[0].state
				r.cipher = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
			}
			mu.Unlock()
		}()
	}
	select {
	case <-time.After(*dlWarm):
	case <-ctx.Done():
	}
	start, t0, cpu0 := got.Load(), time.Now(), t.p.cpuSeconds()
	<-ctx.Done()
	n, cpu := got.Load()-start, t.p.cpuSeconds()-cpu0
	r.bytesPerS = float64(n) / time.Since(t0).Seconds()
	if n > 0 {
		r.cpuPerGB = cpu / (float64(n) / 1e9)
	}
	wg.Wait()
	return r
}

func (b *bench) writeDownloads(md *strings.Builder, rounds []dlRound, withNginx bool) {
	type agg struct {
		rate, cpu []float64
		cipher    string
		errs, dls int
		bad       bool
	}
	per := map[string]*agg{}
	for _, r := range rounds {
		a := per[r.server]
		if a == nil {
			a = &agg{}
			per[r.server] = a
		}
		a.rate, a.cpu = append(a.rate, r.bytesPerS), append(a.cpu, r.cpuPerGB)
		if r.cipher != "" {
			a.cipher = r.cipher
		}
		a.errs += r.errors
		a.dls += r.downloads
		a.bad = a.bad || !r.verifiedOK
		if r.firstErr != "" {
			log.Printf("%s: first download error: %s", r.server, r.firstErr)
		}
	}
	med := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		if len(v) == 0 {
			return 0
		}
		return v[len(v)/2]
	}
	list := func(v []float64, scale float64, f string) string {
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprintf(f, x/scale))
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(md, "### Serving a %d MiB CVD to %d parallel downloaders over mutual TLS\n\n", b.cvdSize>>20, *dlClients)
	fmt.Fprintf(md, "`/%s.cvd` (%d bytes, built by `avfleet cvd build` from generated signatures, imported with\n", dbName, b.cvdSize)
	fmt.Fprintf(md, "`trust.cvd_keys`), fetched in a loop by %d downloaders, one HTTP/1.1 keep-alive connection each.\n", *dlClients)
	if withNginx {
		fmt.Fprintf(md, "Against avfleet and Debian's nginx (%d workers, same certificates, `ssl_verify_client on`, root = the\n", runtime.NumCPU())
		fmt.Fprintf(md, "mirror's published set, so the same file) in %d alternating rounds each: %v warm-up, then body bytes\n", *dlRounds, *dlWarm)
		fmt.Fprintf(md, "received over %v. Server CPU is user+system time of the server's processes in the window\n", *dlWindow)
		fmt.Fprintf(md, "(nginx: master and workers), per GB sent.\n\n")
	} else {
		fmt.Fprintf(md, "%d rounds: %v warm-up, then body bytes received over %v; medians.\n\n", *dlRounds, *dlWarm, *dlWindow)
	}
	fmt.Fprintf(md, "| server | negotiated | MB/s per round | median MB/s | server CPU s/GB per round | median s/GB | complete downloads | errors | content |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range []string{"avfleet", "nginx"} {
		a := per[n]
		if a == nil {
			continue
		}
		fmt.Fprintf(md, "| %s | %s | %s | %.0f | %s | %.2f | %d | %d | %s |\n", n, a.cipher, list(a.rate, 1e6, "%.0f"), med(a.rate)/1e6,
			list(a.cpu, 1, "%.2f"), med(a.cpu), a.dls, a.errs, map[bool]string{false: "SHA-256 ok", true: "WRONG"}[a.bad])
	}
	if av, ng := per["avfleet"], per["nginx"]; withNginx && av != nil && ng != nil {
		ratio := med(av.rate) / med(ng.rate)
		fmt.Fprintf(md, "\n- throughput ratio avfleet / nginx = **%.2f** (target >= 0.9: %s)\n", ratio, map[bool]string{true: "yes", false: "NO"}[ratio >= 0.9])
		fmt.Fprintf(md, "- CPU per GB ratio avfleet / nginx = **%.2f** (lower is cheaper)\n", med(av.cpu)/med(ng.cpu))
		fmt.Fprintf(md, "\nBoth servers seal AES-128-GCM records of 16 KiB (nginx's ssl_buffer_size; Go's crypto/tls after\n"+
			"the first 128 KiB of a connection). The load generator decrypting %d streams on the same cores costs about\n"+
			"as much CPU as the server, so throughput is bounded by the shared cores (and whatever else runs on them)\n"+
			"and moves between rounds; the server CPU per GB measures the serving path itself.\n", *dlClients)
	}
	fmt.Fprintln(md)
}
