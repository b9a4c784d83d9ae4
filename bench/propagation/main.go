//go:build linux

// Command propagation measures how fast and how cheaply new definitions reach
// nodes (bench/propagation.sh runs it; see there). Everything is real: the
// avfleet binary runs the mirror, the agent and `mirror import` as separate
// processes, with mutual TLS on loopback and a managed clamd; the fleet part
// runs 200 of the agent's updaters in this process against one mirror.
//
//  1. propagation: from the start of `avfleet mirror import` of a new cdiff
//     to clamd detecting the signature it added (checked every 10 ms by
//     INSTREAM), RUNS times; median and p99. Each run starts a fresh mirror
//     and agent one version behind: ClamAV's test data has only so many
//     cdiffs, so the runs alternate test-5.cdiff (Win.Worm.Sobig-1) and
//     test-6.cdiff (Win.Worm.Klez-1).
//  2. fleet: FLEET updaters (no clamd: NoReload), all at version 5; then
//     `avfleet mirror import test-6.cdiff`; time until every one has
//     installed 6, and whether any fetched a full database.
//  3. bytes per node for that update, against a full download.
//  4. resident memory of an idle agent and of its clamd.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/avfleet/avfleet/internal/agent/updater"
	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/report"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

var (
	avfleet  = flag.String("avfleet", "", "the avfleet binary to run (required)")
	testdata = flag.String("testdata", "", "ClamAV test databases (default $AVFLEET_CLAMAV_TESTDATA or ../shared/testdata/clamav)")
	runs     = flag.Int("runs", 20, "propagation runs")
	fleet    = flag.Int("fleet", 200, "updaters in the fleet run")
	workDir  = flag.String("dir", "", "work directory (default: a new temp dir, removed at the end)")
	out      = flag.String("out", "", "write the markdown section here (default stdout)")
	cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of this process (the fleet's updaters) here")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *avfleet == "" {
		log.Fatal("propagation: -avfleet BINARY is required")
	}
	if *testdata == "" {
		*testdata = os.Getenv("AVFLEET_CLAMAV_TESTDATA")
		if *testdata == "" {
			*testdata = "../shared/testdata/clamav"
		}
	}
	td, err := filepath.Abs(*testdata)
	must(err)
	*testdata = td
	if *workDir == "" {
		// Short: clamd's socket path lives under it and is limited to 107 bytes.
		d, err := os.MkdirTemp("", "avfb-")
		must(err)
		defer os.RemoveAll(d)
		*workDir = d
	}
	certs := filepath.Join(*workDir, "certs")
	clients := []string{"node1"}
	for i := range *fleet {
		clients = append(clients, fmt.Sprintf("n%03d", i))
	}
	must(tlsutil.Init(certs, []string{"127.0.0.1"}, clients, 0))

	var md strings.Builder
	fmt.Fprintf(&md, "## Definitions propagation (bench/propagation.sh)\n\n")
	fmt.Fprintf(&md, "Last run: %s, %d x %s, load average %s, %s, %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), cpuModel(), loadavg(), runtime.Version(), clamdVersion())

	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		must(err)
		must(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	prop, rss := propagation(certs)
	md.WriteString(prop)
	md.WriteString(rss)
	md.WriteString(fleetSection(certs))

	if *out == "" {
		fmt.Print(md.String())
		return
	}
	must(os.WriteFile(*out, []byte(md.String()), 0o644))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// proc is a child process stopped with SIGTERM (then SIGKILL) by stop.
type proc struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
}

func start(name string, args ...string) *proc {
	cmd := exec.Command(*avfleet, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	must(cmd.Start())
	p := &proc{cmd: cmd, logs: &buf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().String()
}

func writeMirror(dir, certs, listen string) string {
	must(os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, "mirror.yaml")
	must(os.WriteFile(p, []byte(fmt.Sprintf(`data_dir: %s
listen: "%s"
tls: {cert: %s/server.crt, key: %s/server.key, client_ca: %s/ca.crt}
admin_listen: ""
`, filepath.Join(dir, "data"), listen, certs, certs, certs)), 0o644))
	return p
}

func writeAgent(dir, certs, mirror, metrics string) (cfg, state string) {
	state = filepath.Join(dir, "s")
	must(os.MkdirAll(state, 0o755))
	cfg = filepath.Join(dir, "agent.yaml")
	must(os.WriteFile(cfg, []byte(fmt.Sprintf(`node_name: node1
state_dir: %s
mirror:
  urls: ["https://%s"]
  ca: %s/ca.crt
  cert: %s/node1.crt
  key: %s/node1.key
scan:
  schedule: {interval: disabled}
report:
  metrics_listen: "%s"
`, state, mirror, certs, certs, certs, metrics)), 0o644))
	return cfg, state
}

func importFiles(mirrorCfg string, files ...string) {
	args := []string{"mirror", "import", "--config", mirrorCfg}
	for _, f := range files {
		args = append(args, filepath.Join(*testdata, f))
	}
	outp, err := exec.Command(*avfleet, args...).CombinedOutput()
	if err != nil {
		log.Fatalf("avfleet %s: %v\n%s", strings.Join(args, " "), err, outp)
	}
}

// canary reads a body signature's bytes from test.ndb inside a test CVD.
func canary(cvdName, sig string) []byte {
	f, err := os.Open(filepath.Join(*testdata, cvdName))
	must(err)
	defer f.Close()
	_, err = f.Seek(512, io.SeekStart)
	must(err)
	zr, err := gzip.NewReader(f)
	must(err)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		must(err)
		if h.Name != "test.ndb" {
			continue
		}
		sc := bufio.NewScanner(tr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), ":", 5)
			if len(f) >= 4 && f[0] == sig {
				b, err := hex.DecodeString(f[3])
				must(err)
				return b
			}
		}
		log.Fatalf("%s not in %s", sig, cvdName)
	}
}

func detects(c *clamd.Client, data []byte, sig string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.ScanStream(ctx, bytes.NewReader(data))
	return err == nil && r.Signature == sig
}

func waitFor(d time.Duration, what string, ok func() bool) {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			log.Fatalf("propagation: %s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrape reads one sample from a Prometheus text endpoint ("" labels: any).
func scrape(addr, name, label string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return math.NaN()
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name) && (label == "" || strings.Contains(l, label)) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return math.NaN()
}

func propagation(certs string) (string, string) {
	canaries := map[uint]struct {
		sig  string
		data []byte
	}{
		5: {"Win.Worm.Sobig-1", canary("test-5.cvd", "Win.Worm.Sobig-1")},
		6: {"Win.Worm.Klez-1", canary("test-6.cvd", "Win.Worm.Klez-1")},
	}
	var total, afterImport []time.Duration
	var fullAfter []float64
	var agentRSS, clamdRSS, agentPSS int64
	for i := range *runs {
		next := uint(6 - i%2) // alternate 6, 5
		dir := filepath.Join(*workDir, fmt.Sprintf("p%02d", i))
		listen, metrics := freePort(), freePort()
		mcfg := writeMirror(dir, certs, listen)
		importFiles(mcfg, fmt.Sprintf("test-%d.cvd", next-1))
		m := start("mirror", "mirror", "serve", "--config", mcfg)
		acfg, state := writeAgent(dir, certs, listen, metrics)
		a := start("agent", "agent", "run", "--config", acfg)
		c := &clamd.Client{Addr: clamd.Addr{Network: "unix", Address: filepath.Join(state, "clamd.sock")}}
		cn := canaries[next]
		waitFor(30*time.Second, "agent ready", func() bool {
			return scrape(metrics, "avfleet_agent_definitions_version", "") == float64(next-1) &&
				detects(c, eicar, "Eicar-Test-Signature")
		})
		if detects(c, cn.data, cn.sig) {
			log.Fatalf("run %d: %s found before its version", i, cn.sig)
		}
		fullBefore := scrape(metrics, "avfleet_agent_download_bytes_total", `kind="full"`)

		t0 := time.Now()
		importFiles(mcfg, fmt.Sprintf("test-%d.cdiff", next))
		t1 := time.Now()
		waitFor(30*time.Second, "detection", func() bool { return detects(c, cn.data, cn.sig) })
		t2 := time.Now()
		total = append(total, t2.Sub(t0))
		afterImport = append(afterImport, t2.Sub(t1))
		fullAfter = append(fullAfter, scrape(metrics, "avfleet_agent_download_bytes_total", `kind="full"`)-fullBefore)

		if i == *runs-1 {
			// Idle memory: the agent has done its updates; let it settle.
			time.Sleep(10 * time.Second)
			agentRSS, agentPSS = memOf(a.cmd.Process.Pid)
			for _, k := range childrenOf(a.cmd.Process.Pid) {
				r, _ := memOf(k)
				clamdRSS += r
			}
		}
		a.stop()
		m.stop()
	}
	slices.Sort(total)
	slices.Sort(afterImport)
	anyFull := slices.ContainsFunc(fullAfter, func(v float64) bool { return v != 0 })

	var b strings.Builder
	fmt.Fprintf(&b, "### Import to detection (%d runs)\n\n", len(total))
	fmt.Fprintf(&b, "Each run: a fresh `avfleet mirror serve` holding test-N.cvd and a fresh `avfleet agent run`\n")
	fmt.Fprintf(&b, "(managed clamd, mutual TLS, checks_per_day 12) that has installed it; then the clock starts,\n")
	fmt.Fprintf(&b, "`avfleet mirror import test-(N+1).cdiff` runs as its own process, and clamd is asked every\n")
	fmt.Fprintf(&b, "10 ms (INSTREAM) about the canary version N+1 added (Sobig-1 for 5, Klez-1 for 6).\n\n")
	fmt.Fprintf(&b, "| | median | p99 | min | max |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| import start -> clamd detects | %s | %s | %s | %s |\n", ms(pct(total, 50)), ms(pct(total, 99)), ms(total[0]), ms(total[len(total)-1]))
	fmt.Fprintf(&b, "| import finished -> clamd detects | %s | %s | %s | %s |\n\n", ms(pct(afterImport, 50)), ms(pct(afterImport, 99)), ms(afterImport[0]), ms(afterImport[len(afterImport)-1]))
	fmt.Fprintf(&b, "- target: under 5 s: **%s** (freshclam polling 12 times a day waits 1 h on average)\n", yes(pct(total, 99) < 5*time.Second))
	fmt.Fprintf(&b, "- full databases fetched for the updates: %s (the agent applied the cdiff)\n", map[bool]string{false: "none", true: "SOME"}[anyFull])
	fmt.Fprintf(&b, "- with %d samples, p99 is the largest. The path: the separate `import` process verifies and\n", len(total))
	fmt.Fprintf(&b, "  publishes the set; the daemon sees its `verified` link renamed (inotify) and answers the\n")
	fmt.Fprintf(&b, "  agent's watch; cdiff download -> verify and patch -> new set -> RELOAD confirmed.\n\n")

	var r strings.Builder
	fmt.Fprintf(&r, "### Idle agent memory\n\n")
	fmt.Fprintf(&r, "After the last run, 10 s idle (watch open, clamd running with test-%d):\n\n", 6-(*runs-1)%2)
	fmt.Fprintf(&r, "| process | RSS | \n|---|---|\n")
	fmt.Fprintf(&r, "| `avfleet agent run` | %.1f MiB (PSS %.1f MiB) |\n", mib(agentRSS), mib(agentPSS))
	fmt.Fprintf(&r, "| its clamd (test database only) | %.1f MiB |\n\n", mib(clamdRSS))
	fmt.Fprintf(&r, "- target: agent under 30 MB: **%s**. The agent's own memory does not grow with the databases\n", yes(float64(agentRSS) < 30e6))
	fmt.Fprintf(&r, "  (it streams files through the verifier). clamd with the official databases is not measured here\n")
	fmt.Fprintf(&r, "  (no Internet); by ClamAV's published guidance it uses upwards of 1.2 GiB, 2.4 GiB during a\n")
	fmt.Fprintf(&r, "  concurrent reload (docs/operator-guide.md, \"Sizing\").\n\n")
	return b.String(), r.String()
}

var eicar = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")

// memOf returns VmRSS and PSS (smaps_rollup) in bytes.
func memOf(pid int) (rss, pss int64) {
	kb := func(file, key string) int64 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, key) {
				f := strings.Fields(l)
				if len(f) >= 2 {
					v, _ := strconv.ParseInt(f[1], 10, 64)
					return v * 1024
				}
			}
		}
		return 0
	}
	return kb("status", "VmRSS:"), kb("smaps_rollup", "Pss:")
}

func childrenOf(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// fleetResult is one fleet run.
type fleetResult struct {
	times       []time.Duration // per node, from the start of the import to version 6 installed
	fullFetched int             // nodes that downloaded a full database for the update
	perNode     float64         // cdiff bytes per node
	manifest    int             // bytes of the manifest
	settle      time.Duration   // first install of the whole fleet
	importTook  time.Duration
	cpu         time.Duration // CPU time this process (the updaters) used for the update
}

func fleetRun(certs, stateRoot string) fleetResult {
	dir := filepath.Join(*workDir, "fleet-"+filepath.Base(stateRoot))
	listen := freePort()
	mcfg := writeMirror(dir, certs, listen)
	importFiles(mcfg, "test-5.cvd")
	m := start("mirror", "mirror", "serve", "--config", mcfg)
	defer m.stop()
	states, err := os.MkdirTemp(stateRoot, "avfb-fleet-")
	must(err)
	defer os.RemoveAll(states)

	type node struct {
		u       *updater.Updater
		reg     *prometheus.Registry
		updated chan time.Time
	}
	nodes := make([]*node, *fleet)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range nodes {
		name := fmt.Sprintf("n%03d", i)
		tc, err := tlsutil.ClientConfig(filepath.Join(certs, "ca.crt"), filepath.Join(certs, name+".crt"), filepath.Join(certs, name+".key"))
		must(err)
		c, err := updater.NewClient("https://"+listen, tc, 30*time.Second)
		must(err)
		st, err := updater.OpenStore(filepath.Join(states, name))
		must(err)
		reg := prometheus.NewRegistry()
		met, err := updater.NewMetrics(reg)
		must(err)
		n := &node{reg: reg, updated: make(chan time.Time, 16)}
		n.u, err = updater.New(updater.Options{Clients: []*updater.Client{c}, Store: st, Verifier: updater.CVDVerifier{Trust: &cvd.Trust{}},
			Reloader: updater.NoReload{}, ChecksPerDay: 12, Metrics: met, Events: sinkFunc(func(ev report.Event) {
				if u, ok := ev.(report.UpdateEvent); ok && u.Result == report.UpdateUpdated && u.NewVersions["test"] == 6 {
					n.updated <- time.Now()
				}
			}), Logger: slog.New(slog.DiscardHandler)})
		must(err)
		nodes[i] = n
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.u.Run(ctx) }()
	}
	var r fleetResult
	startAt := time.Now()
	waitFor(180*time.Second, "fleet at version 5", func() bool {
		for _, n := range nodes {
			if n.u.Status().Installed["test"] != 5 {
				return false
			}
		}
		return true
	})
	r.settle = time.Since(startAt)
	time.Sleep(2 * time.Second) // every watch is outstanding again
	fullBefore := make([]float64, len(nodes))
	for i, n := range nodes {
		fullBefore[i] = gather(n.reg, "avfleet_agent_download_bytes_total", "full")
	}
	r.manifest = manifestSize(certs, listen)

	cpu0 := cpuTime()
	t0 := time.Now()
	importFiles(mcfg, "test-6.cdiff")
	r.importTook = time.Since(t0)
	deadline := time.After(60 * time.Second)
	for _, n := range nodes {
		select {
		case at := <-n.updated:
			r.times = append(r.times, at.Sub(t0))
		case <-deadline:
			log.Fatalf("fleet: only %d of %d nodes reached version 6 within 60 s", len(r.times), len(nodes))
		}
	}
	r.cpu = cpuTime() - cpu0
	slices.Sort(r.times)
	cdiffBytes := 0.0
	for i, n := range nodes {
		if gather(n.reg, "avfleet_agent_download_bytes_total", "full") != fullBefore[i] {
			r.fullFetched++
		}
		cdiffBytes += gather(n.reg, "avfleet_agent_download_bytes_total", "cdiff")
	}
	r.perNode = cdiffBytes / float64(len(nodes))
	return r
}

func fleetSection(certs string) string {
	disk := fleetRun(certs, *workDir)
	runs := []struct {
		label string
		r     fleetResult
	}{{"state_dir on the VM's disk", disk}}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		runs = append(runs, struct {
			label string
			r     fleetResult
		}{"state_dir on tmpfs", fleetRun(certs, "/dev/shm")})
	}
	full6, err := os.Stat(filepath.Join(*testdata, "test-6.cvd"))
	must(err)

	var b strings.Builder
	n := len(disk.times)
	fmt.Fprintf(&b, "### %d nodes, one mirror\n\n", n)
	fmt.Fprintf(&b, "%d of the agent's updaters in one process (own TLS client certificate, state_dir and watch\n", n)
	fmt.Fprintf(&b, "each; verification with internal/cvd; no clamd: sets are installed without a reload) against\n")
	fmt.Fprintf(&b, "one `avfleet mirror serve` on loopback. All at version 5; then `avfleet mirror import\n")
	fmt.Fprintf(&b, "test-6.cdiff`; the clock starts with the import. Unlike a real fleet, the %d nodes here share\n", n)
	fmt.Fprintf(&b, "this machine's CPUs and one virtual disk (fsync about 10 ms; each node fsyncs its new set a\n")
	fmt.Fprintf(&b, "handful of times), so the run is made twice: state_dir on the disk, and on tmpfs.\n\n")
	fmt.Fprintf(&b, "| nodes at version 6 |")
	for _, r := range runs {
		fmt.Fprintf(&b, " %s |", r.label)
	}
	fmt.Fprintf(&b, "\n|---|")
	for range runs {
		fmt.Fprintf(&b, "---|")
	}
	fmt.Fprintf(&b, "\n")
	for _, q := range []int{1, 50, 90, 99, 100} {
		k := max(1, int(math.Ceil(float64(q)/100*float64(n))))
		fmt.Fprintf(&b, "| %d%% (%d) |", q, k)
		for _, r := range runs {
			fmt.Fprintf(&b, " %s |", ms(r.r.times[k-1]))
		}
		fmt.Fprintf(&b, "\n")
	}
	fmt.Fprintf(&b, "| (`mirror import` itself) |")
	for _, r := range runs {
		fmt.Fprintf(&b, " %s |", ms(r.r.importTook))
	}
	fmt.Fprintf(&b, "\n| (CPU time of the %d updaters for the update) |", n)
	for _, r := range runs {
		fmt.Fprintf(&b, " %s (%.1f ms per node) |", ms(r.r.cpu), float64(r.r.cpu.Microseconds())/1000/float64(n))
	}
	fmt.Fprintf(&b, "\n| (first install, whole fleet, full CVD) |")
	for _, r := range runs {
		fmt.Fprintf(&b, " %s |", ms(r.r.settle))
	}
	fmt.Fprintf(&b, "\n\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "- %s: all within 10 s: **%s**; nodes that fetched a full database: **%d**\n", r.label, yes(r.r.times[n-1] < 10*time.Second), r.r.fullFetched)
	}
	fmt.Fprintf(&b, "\nA node's update costs it the CPU time shown (verify the installed base, verify the cdiff,\n")
	fmt.Fprintf(&b, "patch, verify the result, TLS); here %d nodes queue for this machine's cores (shared with\n", n)
	fmt.Fprintf(&b, "other jobs: see the load average), where a real fleet does that work on %d machines at once\n", n)
	fmt.Fprintf(&b, "and shares only the mirror (one manifest and one cdiff per node).\n\n")

	perNode, manifestBytes := disk.perNode, disk.manifest
	fmt.Fprintf(&b, "### Bytes per node per update\n\n")
	fmt.Fprintf(&b, "| download | bytes |\n|---|---|\n")
	fmt.Fprintf(&b, "| manifest (the watch answer) | %d |\n", manifestBytes)
	fmt.Fprintf(&b, "| cdiff(s), measured per node | %.0f |\n", perNode)
	fmt.Fprintf(&b, "| **update by cdiff** | **%.0f** |\n", perNode+float64(manifestBytes))
	fmt.Fprintf(&b, "| manifest + full test-6.cvd instead | %d |\n\n", full6.Size()+int64(manifestBytes))
	fmt.Fprintf(&b, "- ratio cdiff / full = **%.3f** for ClamAV's tiny test database (a 9 KiB CVD, so the\n", (perNode+float64(manifestBytes))/float64(full6.Size()+int64(manifestBytes)))
	fmt.Fprintf(&b, "  manifest weighs in). Not measured here (no internet): the real daily.cvd is tens of MB and its\n")
	fmt.Fprintf(&b, "  daily cdiffs tens to hundreds of KB, where the same scheme downloads well under 1%% of a full copy.\n")
	fmt.Fprintf(&b, "  `.sign` files are not fetched unless `trust.sign_certs_dir` is set (each is about 5 KB).\n")
	return b.String()
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	must(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type sinkFunc func(report.Event)

func (f sinkFunc) Report(_ context.Context, ev report.Event) error { f(ev); return nil }

func gather(reg *prometheus.Registry, name, kind string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabel(m, "kind", kind) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func manifestSize(certs, listen string) int {
	tc, err := tlsutil.ClientConfig(filepath.Join(certs, "ca.crt"), filepath.Join(certs, "node1.crt"), filepath.Join(certs, "node1.key"))
	must(err)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := cl.Get("https://" + listen + "/api/v1/manifest")
	must(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return len(b)
}

func pct(d []time.Duration, p float64) time.Duration {
	k := max(1, int(math.Ceil(p/100*float64(len(d)))))
	return d[k-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
func mib(b int64) float64       { return float64(b) / (1 << 20) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func clamdVersion() string {
	b, err := exec.Command("clamd", "--version").Output()
	if err != nil {
		if b, err = exec.Command("/usr/sbin/clamd", "--version").Output(); err != nil {
			return "clamd ?"
		}
	}
	return strings.TrimSpace(string(b))
}
