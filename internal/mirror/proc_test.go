package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/testutil"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// Helpers for tests that run the real avfleet binary as a subprocess.

var avfleetBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if avfleetBin.dir != "" {
		os.RemoveAll(avfleetBin.dir)
	}
	os.Exit(code)
}

// avfleetBinary returns $AVFLEET_BIN, or builds cmd/avfleet once per test run.
func avfleetBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AVFLEET_BIN"); p != "" {
		return p
	}
	avfleetBin.once.Do(func() {
		avfleetBin.dir, avfleetBin.err = os.MkdirTemp("", "avfleet-bin-")
		if avfleetBin.err != nil {
			return
		}
		avfleetBin.path = filepath.Join(avfleetBin.dir, "avfleet")
		cmd := exec.Command("go", "build", "-o", avfleetBin.path, "./cmd/avfleet")
		cmd.Dir = testutil.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			avfleetBin.err = fmt.Errorf("go build ./cmd/avfleet: %v\n%s", err, out)
		}
	})
	if avfleetBin.err != nil {
		t.Fatal(avfleetBin.err)
	}
	return avfleetBin.path
}

// freePorts returns n distinct free ports (all held open until chosen, so
// the kernel cannot hand out one twice).
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}

// mirrorEnv is a mirror.yaml with its certificates and data directory.
type mirrorEnv struct {
	dir, cfg, pki, data string
	https, plain, admin string
}

// newMirrorEnv writes a configuration; extra is appended as YAML.
func newMirrorEnv(t testing.TB, extra string) *mirrorEnv {
	t.Helper()
	e := &mirrorEnv{dir: t.TempDir()}
	e.pki = newPKI(t, "node1", "freshclam")
	e.data = filepath.Join(e.dir, "data")
	ports := freePorts(t, 3)
	e.https, e.plain, e.admin = ports[0], ports[1], ports[2]
	e.cfg = filepath.Join(e.dir, "mirror.yaml")
	y := fmt.Sprintf("data_dir: %s\nlisten: %q\nplain_listen: %q\nadmin_listen: %q\ntls: {cert: %s, key: %s, client_ca: %s}\n%s",
		e.data, e.https, e.plain, e.admin, filepath.Join(e.pki, "server.crt"), filepath.Join(e.pki, "server.key"), filepath.Join(e.pki, "ca.crt"), extra)
	if err := os.WriteFile(e.cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

type mirrorProc struct {
	cmd  *exec.Cmd
	log  *testutil.SyncBuffer
	done chan struct{}
	err  error
}

// startMirror runs `avfleet mirror serve` and waits for /healthz.
func (e *mirrorEnv) startMirror(t testing.TB) *mirrorProc {
	t.Helper()
	p := &mirrorProc{log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(avfleetBinary(t), "mirror", "serve", "--config", e.cfg, "--log-level", "debug")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("mirror exited at start: %v\n%s", p.err, p.log)
		default:
		}
		r, err := http.Get("http://" + e.admin + "/healthz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror not healthy after 15 s:\n%s", p.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *mirrorProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and expects exit status 0.
func (p *mirrorProc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
		t.Fatal("mirror did not stop within 15 s of SIGTERM")
	}
	if p.err != nil {
		t.Fatalf("mirror after SIGTERM: %v (want exit status 0)\n%s", p.err, p.log)
	}
}

// requestLine is one request the mirror logged.
type requestLine struct {
	method, path, status, rng string
}

var requestRE = regexp.MustCompile(`msg=request method=(\S+) path=(\S+) status=(\d+) .* range=("[^"]*"|\S*)`)

func (p *mirrorProc) requests() []requestLine {
	var out []requestLine
	for _, l := range strings.Split(p.log.String(), "\n") {
		if m := requestRE.FindStringSubmatch(l); m != nil {
			out = append(out, requestLine{m[1], m[2], m[3], strings.Trim(m[4], `"`)})
		}
	}
	return out
}

// run runs avfleet with args and returns stdout, stderr and the exit code.
func runAvfleet(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, avfleetBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("avfleet %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// client is an HTTPS client with NAME's certificate from the env's PKI.
func (e *mirrorEnv) client(t testing.TB, name string) *http.Client {
	t.Helper()
	tc, err := tlsutil.ClientConfig(filepath.Join(e.pki, "ca.crt"), filepath.Join(e.pki, name+".crt"), filepath.Join(e.pki, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}, Timeout: 20 * time.Second}
}

func (e *mirrorEnv) manifest(t testing.TB, c *http.Client) api.Manifest {
	t.Helper()
	r, err := c.Get("https://" + e.https + api.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var m api.Manifest
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.StatusCode != 200 {
		t.Fatalf("manifest: %d %v", r.StatusCode, err)
	}
	return m
}

// fetch downloads a path and returns its body (fails on non-200).
func (e *mirrorEnv) fetch(t testing.TB, c *http.Client, path string) []byte {
	t.Helper()
	r, err := c.Get("https://" + e.https + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("GET %s: status %d, %v", path, r.StatusCode, err)
	}
	return b
}

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// servedFiles downloads every file the manifest names and checks size and
// SHA-256 against it. It returns path -> content.
func (e *mirrorEnv) servedFiles(t testing.TB, c *http.Client, m api.Manifest) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	check := func(path string, size int64, sum string) {
		if path == "" {
			return
		}
		b := e.fetch(t, c, path)
		if sum != "" && (int64(len(b)) != size || hexSHA256(b) != sum) {
			t.Fatalf("%s: served %d bytes sha256 %s, manifest says %d bytes %s", path, len(b), hexSHA256(b), size, sum)
		}
		out[path] = b
	}
	for _, d := range m.Databases {
		check(d.Path, d.Size, d.SHA256)
		check(d.FullPath, d.FullSize, d.FullSHA256)
		check(d.SignPath, 0, "")
		check(d.FullSignPath, 0, "")
		for _, f := range d.CDiffFiles {
			check(f.Path, f.Size, f.SHA256)
			check(f.SignPath, 0, "")
		}
	}
	return out
}

func copyFile(t testing.TB, dst, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var sighup = syscall.SIGHUP

// scrapeValue reads one series from the subprocess mirror's /metrics (0 if absent).
func scrapeValue(t testing.TB, e *mirrorEnv, series string) float64 {
	t.Helper()
	r, err := http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, series+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(l, series+" "), &v)
			return v
		}
	}
	return 0
}

func renewServerCert(t testing.TB, e *mirrorEnv) {
	t.Helper()
	if err := tlsutil.IssueServer(e.pki, tlsutil.Options{Hosts: []string{"127.0.0.1", "localhost"}, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
}
