// Command mirror-sync compares how the avfleet mirror's upstream sync and
// stock freshclam fetch the same update from the same upstream
// (bench/mirror-sync.sh runs it; see there). The upstream is a static file
// server in this process laid out like database.clamav.net (/test.cvd =
// test-6.cvd, /test-2..6.cdiff and their .sign files) with Range and
// If-Modified-Since; it counts every request and body byte. avfleet runs as
// `avfleet mirror serve` with upstream enabled (dns_txt "", the HTTP header
// check, as freshclam with DNSDatabaseInfo no); freshclam runs once with
// DatabaseMirror pointing at the same server.
//
// Scenarios, each starting from test-1:
//  1. the whole cdiff chain is there (2..6);
//  2. test-4.cdiff is missing upstream;
//  3. a check when already current (at 6).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
)

var (
	avfleet  = flag.String("avfleet", "", "the avfleet binary (required)")
	testdata = flag.String("testdata", "", "ClamAV test databases")
	out      = flag.String("out", "", "write the markdown section here (default stdout)")
)

type request struct {
	path, rng string
	status    int
	bytes     int64
	at        time.Time
}

// upstream is the counting static server.
type upstream struct {
	mu    sync.Mutex
	files map[string][]byte
	reqs  []request
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) { c.status = code; c.ResponseWriter.WriteHeader(code) }
func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = 200
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		u.mu.Lock()
		u.reqs = append(u.reqs, request{path: r.URL.Path, rng: r.Header.Get("Range"), status: cw.status, bytes: cw.n, at: time.Now()})
		u.mu.Unlock()
	}()
	u.mu.Lock()
	b, ok := u.files[strings.TrimPrefix(r.URL.Path, "/")]
	u.mu.Unlock()
	if !ok {
		http.NotFound(cw, r)
		return
	}
	mod := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)
	if strings.HasSuffix(r.URL.Path, ".cvd") {
		if h, err := cvd.ParseHeader(b[:cvd.HeaderSize]); err == nil && !h.Time.IsZero() {
			mod = h.Time
		}
	}
	http.ServeContent(cw, r, r.URL.Path, mod, bytes.NewReader(b))
}

func (u *upstream) reset(files map[string][]byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files, u.reqs = files, nil
}

func (u *upstream) requests() []request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]request(nil), u.reqs...)
}

// row is one client in one scenario.
type row struct {
	scenario, client   string
	requests           int
	dbBytes, signBytes int64
	fullCVD            int
	endVersion         uint
	seconds            float64
	paths              string
}

func summarize(scenario, client string, reqs []request, end uint) row {
	r := row{scenario: scenario, client: client, requests: len(reqs), endVersion: end}
	var paths []string
	for _, q := range reqs {
		if strings.HasSuffix(q.path, ".sign") {
			r.signBytes += q.bytes
		} else {
			r.dbBytes += q.bytes
		}
		if strings.HasSuffix(q.path, ".cvd") && q.rng == "" && q.status == 200 {
			r.fullCVD++
		}
		p := fmt.Sprintf("%s %d", strings.TrimPrefix(q.path, "/"), q.status)
		if q.rng != "" {
			p = fmt.Sprintf("%s[%s] %d", strings.TrimPrefix(q.path, "/"), strings.TrimPrefix(q.rng, "bytes="), q.status)
		}
		paths = append(paths, p)
	}
	r.paths = strings.Join(paths, ", ")
	return r
}

func main() {
	flag.Parse()
	if *avfleet == "" || *testdata == "" {
		log.Fatal("mirror-sync: -avfleet and -testdata are required")
	}
	fc, err := exec.LookPath("freshclam")
	if err != nil {
		log.Fatal("mirror-sync: freshclam is needed (apt-get install clamav-freshclam)")
	}
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(*testdata, n))
		if err != nil {
			log.Fatal(err)
		}
		return b
	}
	std := func() map[string][]byte {
		m := map[string][]byte{"test.cvd": read("test-6.cvd"), "test-6.cvd.sign": read("test-6.cvd.sign")}
		for v := 2; v <= 6; v++ {
			n := fmt.Sprintf("test-%d.cdiff", v)
			m[n], m[n+".sign"] = read(n), read(n+".sign")
		}
		return m
	}
	up := &upstream{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, up)
	base := "http://" + ln.Addr().String()
	work, err := os.MkdirTemp("", "avfleet-mirror-sync-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)

	var rows []row
	scenarios := []struct {
		name  string
		files func() map[string][]byte
		start string // test database the client starts from
	}{
		{"1 -> 6, cdiffs 2..6 upstream", std, "test-1.cvd"},
		{"1 -> 6, test-4.cdiff missing upstream", func() map[string][]byte {
			m := std()
			delete(m, "test-4.cdiff")
			delete(m, "test-4.cdiff.sign")
			return m
		}, "test-1.cvd"},
		{"already current (6)", std, "test-6.cvd"},
	}
	for i, sc := range scenarios {
		dir := filepath.Join(work, fmt.Sprintf("avfleet-%d", i))
		up.reset(sc.files())
		v, end := runAvfleet(dir, base, filepath.Join(*testdata, sc.start))
		r := summarize(sc.name, "avfleet mirror (sync)", up.requests(), v)
		if reqs := up.requests(); len(reqs) > 0 {
			r.seconds = end.Sub(reqs[0].at).Seconds()
		}
		rows = append(rows, r)

		dir = filepath.Join(work, fmt.Sprintf("freshclam-%d", i))
		up.reset(sc.files())
		began := time.Now()
		v = runFreshclam(fc, dir, base, read(sc.start))
		r = summarize(sc.name, "freshclam "+freshclamVersion(fc), up.requests(), v)
		r.seconds = time.Since(began).Seconds()
		rows = append(rows, r)
	}

	var md strings.Builder
	fmt.Fprintf(&md, "## Upstream sync against freshclam (bench/mirror-sync.sh)\n\n")
	fmt.Fprintf(&md, "Last run: %s, %d x %s, %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), cpuModel(), runtime.Version())
	fmt.Fprintf(&md, "One upstream laid out like database.clamav.net (`/test.cvd` = test-6.cvd %d bytes, cdiffs 2..6 %d bytes in all,\n",
		len(read("test-6.cvd")), cdiffBytes(read))
	fmt.Fprintf(&md, "a `.sign` of %d bytes beside each), HTTP on loopback; avfleet with `dns_txt: \"\"`, freshclam with\n", len(read("test-6.cvd.sign")))
	fmt.Fprintf(&md, "`DNSDatabaseInfo no`, both from the same start. Bytes are response bodies counted by the server.\n")
	fmt.Fprintf(&md, "Seconds: avfleet from its first request to the end of the check (every file verified, patched and\n"+
		"published, fsync included); freshclam its whole run (start, downloads, patching, CLD, its load test).\n\n")
	fmt.Fprintf(&md, "| scenario | client | requests | database bytes | .sign bytes | full CVDs | ends at | seconds |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&md, "| %s | %s | %d | %d | %d | %d | %d | %.2f |\n", r.scenario, r.client, r.requests, r.dbBytes, r.signBytes, r.fullCVD, r.endVersion, r.seconds)
	}
	fmt.Fprintf(&md, "\nRequests made:\n\n")
	for _, r := range rows {
		fmt.Fprintf(&md, "- %s, %s: %s\n", r.scenario, r.client, r.paths)
	}
	fmt.Fprintf(&md, "\nBoth check the version with one 512-byte Range request (`If-Modified-Since` the local build time;\n"+
		"304 when current) and fetch only cdiffs when the chain is there. avfleet also fetches the ClamAV 1.5 `.sign`\n"+
		"beside each file (freshclam 1.4 does not), which is most of its bytes with these tiny test databases and\n"+
		"a few KB per file with real ones. When a cdiff is missing, freshclam 1.4 keeps the partial update and\n"+
		"waits for the next run; avfleet takes the full CVD in the same check. avfleet's seconds are its store's\n"+
		"pipeline: each cdiff is verified, applied to the verified database, the result verified again and\n"+
		"published as a set of its own before the next is fetched, so a mirror never serves a half-applied chain.\n")
	if *out == "" {
		fmt.Print(md.String())
		return
	}
	if err := os.WriteFile(*out, []byte(md.String()), 0o644); err != nil {
		log.Fatal(err)
	}
}

func cdiffBytes(read func(string) []byte) int {
	n := 0
	for v := 2; v <= 6; v++ {
		n += len(read(fmt.Sprintf("test-%d.cdiff", v)))
	}
	return n
}

// runAvfleet imports start into a fresh data dir, runs `mirror serve` with
// upstream sync until its first check has logged its end, and returns the
// version the mirror then holds and when the check ended.
func runAvfleet(dir, base, start string) (uint, time.Time) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	conf := filepath.Join(dir, "mirror.yaml")
	y := fmt.Sprintf("data_dir: %s\nlisten: \"\"\nadmin_listen: \"\"\nplain_listen: \"127.0.0.1:0\"\nupstream:\n  enabled: true\n  urls: [%q]\n  databases: [test]\n  dns_txt: \"\"\n  checks_per_day: 1\n",
		filepath.Join(dir, "data"), base)
	if err := os.WriteFile(conf, []byte(y), 0o644); err != nil {
		log.Fatal(err)
	}
	if out, err := exec.Command(*avfleet, "mirror", "import", "--config", conf, start).CombinedOutput(); err != nil {
		log.Fatalf("mirror import: %v\n%s", err, out)
	}
	serve := exec.Command(*avfleet, "mirror", "serve", "--config", conf, "--log-level", "debug", "--log-format", "json")
	logs, err := serve.StderrPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	ended := make(chan time.Time, 1)
	go func() {
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			var l struct {
				Time time.Time `json:"time"`
				Msg  string    `json:"msg"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			switch l.Msg {
			case "updated from upstream", "upstream has nothing newer", "upstream sync failed":
				select {
				case ended <- l.Time:
				default:
				}
			}
		}
	}()
	var end time.Time
	select {
	case end = <-ended:
	case <-time.After(60 * time.Second):
		log.Fatal("mirror-sync: avfleet's first upstream check did not finish in 60 s")
	}
	st, err := status(conf)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range st.Databases {
		if d.Name == "test" {
			return d.LatestVersion, end
		}
	}
	return 0, end
}

type mirrorStatus struct {
	Databases []struct {
		Name          string `json:"name"`
		LatestVersion uint   `json:"latest_version"`
		LastSync      *struct {
			CheckedAt time.Time `json:"checked_at"`
			Result    string    `json:"result"`
		} `json:"last_sync"`
	} `json:"databases"`
}

func status(conf string) (mirrorStatus, error) {
	var st mirrorStatus
	b, err := exec.Command(*avfleet, "mirror", "status", "--config", conf, "--json").Output()
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// runFreshclam runs stock freshclam once on a database directory holding
// start as test.cvd and returns the version it ends with.
func runFreshclam(bin, dir, base string, start []byte) uint {
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db, "test.cvd"), start, 0o644); err != nil {
		log.Fatal(err)
	}
	owner := "root"
	if u, err := user.Current(); err == nil {
		owner = u.Username
	}
	conf := strings.Join([]string{"DatabaseDirectory " + db, "DatabaseMirror " + base, "DNSDatabaseInfo no",
		"DatabaseOwner " + owner, "ExtraDatabase test", "ExcludeDatabase main", "ExcludeDatabase daily",
		"ExcludeDatabase bytecode", "MaxAttempts 1", "ConnectTimeout 10", "ReceiveTimeout 30", ""}, "\n")
	cf := filepath.Join(dir, "freshclam.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		log.Fatal(err)
	}
	out, err := exec.Command(bin, "--config-file="+cf, "--foreground", "--stdout", "--no-dns").CombinedOutput()
	if err != nil {
		log.Printf("freshclam exited with %v:\n%s", err, out)
	}
	var v uint
	for _, n := range []string{"test.cld", "test.cvd"} {
		b, err := os.ReadFile(filepath.Join(db, n))
		if err != nil || len(b) < cvd.HeaderSize {
			continue
		}
		if h, err := cvd.ParseHeader(b[:cvd.HeaderSize]); err == nil && h.Version > v {
			v = h.Version
		}
	}
	return v
}

func freshclamVersion(bin string) string {
	b, _ := exec.Command(bin, "--version").Output()
	if m := regexp.MustCompile(`ClamAV ([0-9.]+)`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return "?"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.IndexByte(l, ':'); i > 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return runtime.GOARCH
}
