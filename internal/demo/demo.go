package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/agent"
	"github.com/avfleet/avfleet/internal/agent/clamdproc"
	"github.com/avfleet/avfleet/internal/agent/scan"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/report"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// InstallHint is the command that installs what the demo needs.
const InstallHint = "apt-get install clamav clamav-daemon clamav-freshclam"

// ErrNoClamd means clamd is not installed: the demo cannot run.
var ErrNoClamd = errors.New("clamd is not installed")

// UnexpectedError means the demo ran but a result was not the one it must
// be (a bug, or a clamd that behaves differently).
type UnexpectedError struct{ What string }

func (e *UnexpectedError) Error() string { return "unexpected result: " + e.What }

// Options configure a demo run.
type Options struct {
	Out         io.Writer     // the story, in plain words; nil: discarded
	Keep        bool          // keep the directory and print how to use it
	TempDir     string        // parent of the work directory; "": $TMPDIR or /tmp
	ClamdBinary string        // "": clamd, looked up as the agent does
	LogLevel    slog.Level    // of the daemons' log files
	LogJSON     bool          // the daemons' log files in JSON, as --log-format json
	Executable  string        // avfleet in the printed commands; "": this program
	Timeout     time.Duration // longest wait for any one step; 0: 60 s
}

// Result is what the demo saw (for tests).
type Result struct {
	Dir           string
	Found         [2]map[string]string // per scan: sample name -> signature ("" clean)
	UpdateLatency time.Duration        // import of version 2 -> clamd confirmed it
	Nodes         mirror.NodeCounts    // the mirror's view after version 2
}

const (
	node   = "demo-node"
	dbName = "demo"
	steps  = 8
)

// run holds one demo's state.
type run struct {
	o    Options
	out  *printer
	dir  string
	res  *Result
	exe  string
	keep bool

	clamd, clamdVersion string

	pki, keyPrefix, samplesDir  string
	mirrorCfgPath, agentCfgPath string
	mirrorAddr, adminAddr       string
	metricsAddr                 string
	mirrorLog, agentLog         *os.File

	m        *mirror.Daemon
	mStop    context.CancelFunc
	mDone    chan error
	a        *agent.Agent
	aStop    context.CancelFunc
	aDone    chan error
	rt       *agent.Runtime
	samples  []sample
	lastScan report.ScanSummary
}

// Run runs the demo. Whatever happens, the mirror, the agent and its clamd
// are stopped before it returns, and the directory is removed unless
// o.Keep. An error wrapping ErrNoClamd means clamd is missing (nothing was
// done); *UnexpectedError that a result was wrong; ctx's error that the demo
// was interrupted.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	r := &run{o: o, out: &printer{w: o.Out}, res: &Result{}, keep: o.Keep}
	if r.clamd, err = clamdproc.LookPath(o.ClamdBinary); err != nil {
		if o.ClamdBinary == "" {
			return nil, fmt.Errorf("%w (no clamd in PATH, /usr/sbin or /sbin)", ErrNoClamd)
		}
		return nil, fmt.Errorf("%w: %v", ErrNoClamd, err)
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	r.clamdVersion, err = clamdproc.BinaryVersion(vctx, r.clamd)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not run: %v", ErrNoClamd, r.clamd, err)
	}
	r.exe = o.Executable
	if r.exe == "" {
		if r.exe, err = os.Executable(); err != nil {
			r.exe = "avfleet"
		}
	}
	if err := r.makeDir(); err != nil {
		return nil, err
	}
	r.res.Dir = r.dir
	start := time.Now()
	r.out.line("avfleet demo: a mirror, an agent with its own clamd and a scan, all on this machine.")
	r.out.line("Work directory: %s (%s)", r.dir, map[bool]string{true: "kept at the end: --keep", false: "removed at the end; --keep keeps it"}[r.keep])
	r.out.line("clamd: %s (%s)", r.clamd, r.clamdVersion)
	defer func() { r.finish(err, time.Since(start)) }()

	for _, step := range []func(context.Context) error{r.certificates, r.database, r.startMirror, r.startAgent, r.writeSamples, r.firstScan, r.fleetView, r.version2} {
		if ctx.Err() == nil {
			err = step(ctx)
		}
		if ctx.Err() != nil {
			return r.res, fmt.Errorf("interrupted: %w", ctx.Err())
		}
		if err != nil {
			return r.res, err
		}
	}
	r.out.line("")
	r.out.line("Done in %.1f s: definitions signed by your own key went from the mirror to the agent's clamd over mutual TLS, twice, and every scan result reached the mirror.", time.Since(start).Seconds())
	return r.res, nil
}

// makeDir creates the work directory. clamd's socket lives inside it, and a
// unix socket path may be at most 107 bytes, so a long $TMPDIR falls back to
// /tmp.
func (r *run) makeDir() error {
	parent := r.o.TempDir
	if parent == "" {
		parent = os.TempDir()
		if len(parent) > 40 {
			parent = "/tmp"
		}
	}
	dir, err := os.MkdirTemp(parent, "avfleet-demo-")
	if err != nil {
		return fmt.Errorf("create the demo directory: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	r.dir = dir
	if n := len(filepath.Join(dir, "agent", "state", clamdproc.SocketName)); n > 107 {
		os.RemoveAll(dir)
		return fmt.Errorf("demo directory %s is too long for clamd's socket path (%d bytes, at most 107): set TMPDIR=/tmp", dir, n)
	}
	return nil
}

func (r *run) path(p ...string) string { return filepath.Join(append([]string{r.dir}, p...)...) }

// rel shortens a path inside the work directory for printing.
func (r *run) rel(p string) string {
	if q, err := filepath.Rel(r.dir, p); err == nil && !strings.HasPrefix(q, "..") {
		return q
	}
	return p
}

func (r *run) certificates(context.Context) error {
	r.out.step(1, "Certificates for mutual TLS")
	r.pki = r.path("pki")
	if err := tlsutil.Init(r.pki, []string{"127.0.0.1", "localhost"}, []string{node}, 0); err != nil {
		return err
	}
	r.out.detail("a fleet CA, the mirror's server certificate (for 127.0.0.1 and localhost) and a client")
	r.out.detail("certificate for node %q: its CN is the node's identity at the mirror (what `avfleet certs init` does)", node)
	r.out.detail("in %s/: ca.crt ca.key server.crt server.key %s.crt %s.key", r.rel(r.pki), node, node)
	return nil
}

func (r *run) database(context.Context) error {
	r.out.step(2, "An organisation signing key and the demo database, version 1")
	if err := os.MkdirAll(r.path("keys"), 0o700); err != nil {
		return err
	}
	r.keyPrefix = r.path("keys", dbName)
	key, err := cvd.WriteKeyPair(r.keyPrefix, false)
	if err != nil {
		return err
	}
	r.out.detail("RSA key pair %s.key / %s.pub.pem (fingerprint key:%s…): the mirror and the agent", r.rel(r.keyPrefix), r.rel(r.keyPrefix), cvd.Fingerprint(&key.PublicKey)[:16])
	r.out.detail("both list the public key in trust.cvd_keys, beside ClamAV's built-in keys")
	p, err := r.buildDB(1)
	if err != nil {
		return err
	}
	r.out.detail("%s, signed with it (what `avfleet cvd build --key` does), holds:", r.rel(p))
	r.out.detail("  %-22s hash signature: MD5 and size of the EICAR test file", sigEICAR)
	r.out.detail("  %-22s hash signature: clam.exe, ClamAV's own test program", sigClamExe)
	r.out.detail("  %-22s body signature: the bytes %q anywhere in a file", sigMarker, markerV1)
	return nil
}

// buildDB writes databases/vN/demo.cvd signed with the demo key.
func (r *run) buildDB(version uint) (string, error) {
	files, err := signatureFiles(r.path("signatures", fmt.Sprintf("v%d", version)), version)
	if err != nil {
		return "", err
	}
	kb, err := os.ReadFile(r.keyPrefix + ".key")
	if err != nil {
		return "", err
	}
	key, err := cvd.ParsePrivateKeyPEM(kb)
	if err != nil {
		return "", err
	}
	out := r.path("databases", fmt.Sprintf("v%d", version), dbName+".cvd")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	// A build time a minute ago: the verifiers refuse databases from the future.
	err = cvd.Build(f, cvd.BuildOptions{Name: dbName, Version: version, Builder: "avfleet-demo", Time: time.Now().Add(-time.Minute), Key: key, Files: files})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("build %s: %w", out, err)
	}
	return out, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (r *run) logger(f *os.File) *slog.Logger {
	opts := &slog.HandlerOptions{Level: r.o.LogLevel}
	if r.o.LogJSON {
		return slog.New(slog.NewJSONHandler(f, opts))
	}
	return slog.New(slog.NewTextHandler(f, opts))
}

func (r *run) startMirror(ctx context.Context) error {
	r.out.step(3, "The mirror (avfleet mirror serve)")
	if err := os.MkdirAll(r.path("mirror"), 0o700); err != nil {
		return err
	}
	var err error
	if r.mirrorLog, err = os.Create(r.path("mirror", "mirror.log")); err != nil {
		return err
	}
	r.mirrorCfgPath = r.path("mirror", "mirror.yaml")
	// A port found free may be taken before the daemon binds it: try again.
	for attempt := 1; ; attempt++ {
		if r.mirrorAddr, err = freeAddr(); err != nil {
			return err
		}
		if r.adminAddr, err = freeAddr(); err != nil {
			return err
		}
		yaml := fmt.Sprintf(`# avfleet demo mirror: air-gapped (files arrive by import), mutual TLS on loopback.
data_dir: %q
listen: %q
tls: {cert: %q, key: %q, client_ca: %q}
admin_listen: %q
upstream: {enabled: false}
trust:
  cvd_keys: [%q]
`, r.path("mirror", "data"), r.mirrorAddr, filepath.Join(r.pki, "server.crt"), filepath.Join(r.pki, "server.key"),
			filepath.Join(r.pki, "ca.crt"), r.adminAddr, r.keyPrefix+".pub.pem")
		if err := os.WriteFile(r.mirrorCfgPath, []byte(yaml), 0o644); err != nil {
			return err
		}
		cfg, err := config.LoadMirror(r.mirrorCfgPath)
		if err != nil {
			return err
		}
		r.m, err = mirror.NewDaemon(mirror.DaemonOptions{Config: cfg, Logger: r.logger(r.mirrorLog)})
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("start the mirror: %w", err)
		}
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.mStop, r.mDone = cancel, make(chan error, 1)
	go func() { r.mDone <- r.m.Run(mctx) }()
	r.out.detail("configuration %s, log %s, data in %s/", r.rel(r.mirrorCfgPath), r.rel(r.mirrorLog.Name()), r.rel(r.path("mirror", "data")))
	r.out.detail("serves https://%s to clients with a certificate from the fleet CA only; metrics on http://%s/metrics", r.mirrorAddr, r.adminAddr)

	p := r.path("databases", "v1", dbName+".cvd")
	res, err := r.m.Store().Import(ctx, []string{p})
	if err != nil {
		return fmt.Errorf("import %s: %w", p, err)
	}
	if err := r.printImport(res, 1); err != nil {
		return err
	}
	return nil
}

// printImport shows an import's outcome and insists that it was accepted.
func (r *run) printImport(res []mirror.Result, version uint) error {
	for _, x := range res {
		if x.Outcome != mirror.Accepted {
			return &UnexpectedError{fmt.Sprintf("the mirror did not accept %s: %s %s %s", x.File, x.Outcome, x.Check, x.Reason)}
		}
		r.out.detail("import %s (what `avfleet mirror import` does): accepted, %s version %d, verified with the", r.rel(x.File), x.Database, x.Version)
		r.out.detail("same checks the agents run (header and .info signatures by the organisation key, MD5, every file's SHA-256)")
	}
	if len(res) != 1 || res[0].Version != version {
		return &UnexpectedError{fmt.Sprintf("import of version %d gave %d results", version, len(res))}
	}
	return nil
}

func (r *run) startAgent(ctx context.Context) error {
	r.out.step(4, "The agent (avfleet agent run) with its own clamd")
	if err := os.MkdirAll(r.path("agent"), 0o700); err != nil {
		return err
	}
	var err error
	if r.agentLog, err = os.Create(r.path("agent", "agent.log")); err != nil {
		return err
	}
	r.samplesDir = r.path("samples")
	r.agentCfgPath = r.path("agent", "agent.yaml")
	var cfg *config.Agent
	for attempt := 1; ; attempt++ {
		if r.metricsAddr, err = freeAddr(); err != nil {
			return err
		}
		yaml := fmt.Sprintf(`# avfleet demo agent: a complete node configuration.
node_name: %q                 # = the CN of mirror.cert
state_dir: %q
mirror:
  urls: [%q]
  ca: %q
  cert: %q
  key: %q
clamd:
  mode: managed                       # the agent runs clamd with a generated clamd.conf in state_dir
  binary: %q
scan:
  schedule: {interval: disabled}      # the demo scans on demand
  paths: [%q]
  containers: false
  quarantine_dir: %q
report:
  metrics_listen: %q
trust:
  cvd_keys: [%q]
`, node, r.path("agent", "state"), "https://"+r.mirrorAddr, filepath.Join(r.pki, "ca.crt"),
			filepath.Join(r.pki, node+".crt"), filepath.Join(r.pki, node+".key"), r.clamd, r.samplesDir,
			r.path("agent", "quarantine"), r.metricsAddr, r.keyPrefix+".pub.pem")
		if err := os.WriteFile(r.agentCfgPath, []byte(yaml), 0o644); err != nil {
			return err
		}
		if cfg, err = config.LoadAgent(r.agentCfgPath); err != nil {
			return err
		}
		ready := make(chan *agent.Runtime, 1)
		part := agent.Part{Name: "demo", Run: func(ctx context.Context, rt *agent.Runtime) error {
			ready <- rt
			<-ctx.Done()
			return nil
		}}
		r.a, err = agent.New(agent.Options{Config: cfg, Logger: r.logger(r.agentLog), Parts: []agent.Part{part}})
		if err != nil {
			if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			return fmt.Errorf("start the agent: %w", err)
		}
		actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r.aStop, r.aDone = cancel, make(chan error, 1)
		go func() { r.aDone <- r.a.Run(actx) }()
		r.out.detail("configuration %s, log %s (clamd's own lines too), state in %s/", r.rel(r.agentCfgPath), r.rel(r.agentLog.Name()), r.rel(cfg.StateDir))
		start := time.Now()
		select {
		case r.rt = <-ready:
		case err := <-r.aDone:
			r.aDone <- err // for finish
			return fmt.Errorf("the agent stopped: %v (see %s)", err, r.agentLog.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.o.Timeout):
			return fmt.Errorf("the agent was not ready within %s (see %s)", r.o.Timeout, r.agentLog.Name())
		}
		r.out.detail("it fetched the manifest and demo.cvd from https://%s with its client certificate, verified the", r.mirrorAddr)
		r.out.detail("file again itself, installed it in %s, then started clamd on it: ready in %.1f s", r.rel(r.rt.DBDir), time.Since(start).Seconds())
		files, _ := installedFiles(r.rt.DBDir)
		r.out.detail("installed: %s (clamd trusts only ClamAV's key in a .cvd, so the agent hands a database", strings.Join(files, " "))
		r.out.detail("signed by an organisation key to clamd as a .cud, after verifying the signature itself)")
		r.out.detail("clamd socket unix://%s, metrics http://%s/metrics", filepath.Join(cfg.StateDir, clamdproc.SocketName), r.metricsAddr)
		return nil
	}
}

func installedFiles(dbDir string) ([]string, error) {
	ents, err := os.ReadDir(dbDir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (r *run) writeSamples(context.Context) error {
	r.out.step(5, "Sample files")
	s, note, err := samples()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.samplesDir, 0o755); err != nil {
		return err
	}
	for _, x := range s {
		if err := os.WriteFile(filepath.Join(r.samplesDir, x.name), x.data, 0o644); err != nil {
			return err
		}
		r.out.detail("%-15s %s", x.name, x.what)
	}
	if note != "" {
		r.out.detail("(%s)", note)
	}
	r.out.detail("in %s/", r.rel(r.samplesDir))
	r.samples = s
	return nil
}

// scanSamples scans the samples directory through the agent's clamd, the
// way `avfleet scan` does; results go to the agent's reporter (log, history,
// metrics, the report to the mirror).
func (r *run) scanSamples(ctx context.Context) (report.ScanSummary, map[string]string, error) {
	sc, err := scan.New(scan.Config{Node: r.rt.Node, Engine: scan.ClamdEngine(r.rt.Clamd), Sink: r.rt.Reporter, Logger: r.rt.Logger})
	if err != nil {
		return report.ScanSummary{}, nil, err
	}
	defer sc.Close()
	_, versions, _ := scan.Definitions(r.rt.DBDir)
	found := map[string]string{}
	var problems []string
	sum, err := sc.Run(ctx, scan.Options{Trigger: report.TriggerOnDemand, Paths: []string{r.samplesDir}, DBVersions: versions,
		OnFile: func(ev scan.FileEvent) {
			name := r.rel(ev.Path)
			name = strings.TrimPrefix(name, "samples/")
			switch {
			case ev.Signature != "":
				found[name] = ev.Signature
			case scan.IsError(ev.Reason):
				problems = append(problems, fmt.Sprintf("%s: %s: %s", name, ev.Reason, ev.Err))
			}
		}})
	if err != nil {
		return sum, found, fmt.Errorf("scan %s: %w", r.samplesDir, err)
	}
	if len(problems) > 0 {
		return sum, found, &UnexpectedError{"files not scanned: " + strings.Join(problems, "; ")}
	}
	return sum, found, nil
}

// showScan prints one line per sample and checks each against what the
// database version must find.
func (r *run) showScan(sum report.ScanSummary, found map[string]string, version int, prev map[string]string) error {
	var wrong []string
	for _, x := range r.samples {
		got := found[x.name]
		want := x.wantV1
		if version == 2 {
			want = x.wantV2
		}
		verdict := "OK (clean)"
		if got != "" {
			verdict = got + " FOUND"
		}
		mark := ""
		if prev != nil && got != "" && prev[x.name] == "" {
			mark = "   <- new: only version 2 knows it"
		}
		r.out.detail("%-15s %s%s", x.name, verdict, mark)
		if strings.TrimSuffix(got, ".UNOFFICIAL") != want {
			wrong = append(wrong, fmt.Sprintf("%s: got %q, want %q", x.name, got, want))
		}
	}
	r.out.detail("%d files scanned in %.2f s, %d infected (clamd adds .UNOFFICIAL to signatures that are not ClamAV's own)",
		sum.Files, sum.Duration.Seconds(), sum.Detections)
	if len(wrong) > 0 {
		return &UnexpectedError{fmt.Sprintf("scan with version %d: %s", version, strings.Join(wrong, "; "))}
	}
	return nil
}

func (r *run) firstScan(ctx context.Context) error {
	r.out.step(6, "Scan (what `avfleet scan` does)")
	r.out.detail("each file is opened once and its descriptor handed to clamd (FILDES); clamd unpacks the archives")
	sum, found, err := r.scanSamples(ctx)
	r.res.Found[0] = found
	if err != nil {
		return err
	}
	r.lastScan = sum
	return r.showScan(sum, found, 1, nil)
}

func (r *run) fleetView(ctx context.Context) error {
	r.out.step(7, "The mirror's view of the fleet")
	rep, st, wait, err := r.waitReport(ctx, func(rep *agent.NodeReport) bool { return r.reportsScan(rep, r.lastScan) })
	if err != nil {
		return err
	}
	r.showFleet(rep, st, wait)
	return nil
}

// reportsScan reports whether a node report describes scan sum.
func (r *run) reportsScan(rep *agent.NodeReport, sum report.ScanSummary) bool {
	ls := rep.LastScan
	return ls != nil && ls.FinishedAt != nil && ls.Files == sum.Files && ls.Infected == sum.Detections && ls.FinishedAt.Sub(sum.End).Abs() < time.Millisecond
}

// waitReport waits until the mirror has stored a report of the demo node
// for which ok holds, and returns it with the mirror's status.
func (r *run) waitReport(ctx context.Context, ok func(*agent.NodeReport) bool) (*agent.NodeReport, mirror.Status, time.Duration, error) {
	start := time.Now()
	for {
		recs, err := r.m.Store().State().NodeReports()
		if err != nil {
			return nil, mirror.Status{}, 0, err
		}
		for _, rec := range recs {
			if rec.Node != node {
				continue
			}
			var rep agent.NodeReport
			if json.Unmarshal(rec.Report, &rep) == nil && ok(&rep) {
				st, err := r.m.Store().Status()
				return &rep, st, time.Since(start), err
			}
		}
		select {
		case <-ctx.Done():
			return nil, mirror.Status{}, 0, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Since(start) > r.o.Timeout {
			return nil, mirror.Status{}, 0, &UnexpectedError{fmt.Sprintf("no report from %s reached the mirror within %s (see %s)", node, r.o.Timeout, r.agentLog.Name())}
		}
	}
}

func (r *run) showFleet(rep *agent.NodeReport, st mirror.Status, wait time.Duration) {
	served := map[string]uint{}
	for _, d := range st.Databases {
		served[d.Name] = d.Version
	}
	r.out.detail("after every update and scan the agent reports to the mirror (POST /api/v1/nodes/%s/report, as", node)
	r.out.detail("its certificate's CN); this one arrived %.2f s after the scan ended", wait.Seconds())
	r.out.detail("avfleet mirror status: serving %s version %d; nodes: %d total, %d reporting (24 h), %d current",
		dbName, served[dbName], st.Nodes.Total, st.Nodes.Reporting, st.Nodes.Current)
	ls := rep.LastScan
	r.out.detail("node %s: runs %s version %d, %s, last scan %d files, %d infected (%s)",
		rep.Node, dbName, rep.Databases[dbName], rep.ClamdVersion, ls.Files, ls.Infected, ls.Status)
}

func (r *run) version2(ctx context.Context) error {
	r.out.step(8, "Version 2 of the database: published, installed, used")
	p, err := r.buildDB(2)
	if err != nil {
		return err
	}
	r.out.detail("%s adds %s: a body signature for %q", r.rel(p), sigNewInV2, markerV2)
	start := time.Now()
	res, err := r.m.Store().Import(ctx, []string{p})
	if err != nil {
		return fmt.Errorf("import %s: %w", p, err)
	}
	if err := r.printImport(res, 2); err != nil {
		return err
	}
	for r.rt.Updater.Status().Installed[dbName] != 2 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-r.aDone:
			r.aDone <- err
			return fmt.Errorf("the agent stopped: %v (see %s)", err, r.agentLog.Name())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Since(start) > r.o.Timeout {
			return &UnexpectedError{fmt.Sprintf("the agent did not install version 2 within %s (see %s)", r.o.Timeout, r.agentLog.Name())}
		}
	}
	r.res.UpdateLatency = time.Since(start)
	r.out.detail("the agent had a watch request open (GET /api/v1/watch): the mirror answered it at once, the agent")
	r.out.detail("downloaded and verified version 2, switched clamd's database directory atomically and clamd")
	r.out.detail("confirmed the reload: %.2f s from the import (freshclam would have waited for its next poll)", r.res.UpdateLatency.Seconds())

	r.out.detail("")
	r.out.detail("scan again:")
	sum, found, err := r.scanSamples(ctx)
	r.res.Found[1] = found
	if err != nil {
		return err
	}
	if err := r.showScan(sum, found, 2, r.res.Found[0]); err != nil {
		return err
	}
	r.out.detail("")
	rep, st, wait, err := r.waitReport(ctx, func(rep *agent.NodeReport) bool {
		return rep.Databases[dbName] == 2 && r.reportsScan(rep, sum)
	})
	if err != nil {
		return err
	}
	r.showFleet(rep, st, wait)
	r.res.Nodes = st.Nodes
	if st.Nodes.Total != 1 || st.Nodes.Current != 1 {
		return &UnexpectedError{fmt.Sprintf("the mirror counts %d nodes, %d current; want 1 and 1", st.Nodes.Total, st.Nodes.Current)}
	}
	return nil
}

// finish stops the agent (and its clamd) and the mirror, then removes the
// directory or tells how to use it.
func (r *run) finish(err error, took time.Duration) {
	if err != nil {
		r.out.line("")
		r.out.line("The demo stopped after %.1f s: %v", took.Seconds(), err)
		if r.agentLog != nil {
			r.out.line("Logs: %s, %s", r.mirrorLog.Name(), r.agentLog.Name())
		} else if r.mirrorLog != nil {
			r.out.line("Log: %s", r.mirrorLog.Name())
		}
	}
	r.out.line("")
	r.out.line("Stopping the agent (and its clamd) and the mirror.")
	r.stopPart("agent", r.aStop, r.aDone)
	r.stopPart("mirror", r.mStop, r.mDone)
	for _, f := range []*os.File{r.mirrorLog, r.agentLog} {
		if f != nil {
			f.Close()
		}
	}
	if !r.keep {
		if e := os.RemoveAll(r.dir); e != nil {
			r.out.line("could not remove %s: %v", r.dir, e)
		} else {
			r.out.line("Removed %s. Run `avfleet demo --keep` to keep it and look around.", r.dir)
		}
		return
	}
	if r.agentCfgPath == "" {
		r.out.line("Kept %s.", r.dir)
		return
	}
	r.pokeHelp()
}

// pokeHelp prints the commands that bring the demo fleet back and look at it.
func (r *run) pokeHelp() {
	x := r.exe
	sock := r.path("agent", "state", clamdproc.SocketName)
	client := fmt.Sprintf("--cacert %s --cert %s --key %s", filepath.Join(r.pki, "ca.crt"), filepath.Join(r.pki, node+".crt"), filepath.Join(r.pki, node+".key"))
	lines := []string{
		"Kept " + r.dir + ". Everything in it is what the demo used; to run the mirror and the agent again",
		"and look around (each line works as shown; clamd answers a second or two after the agent starts):",
		"",
		fmt.Sprintf("  %s mirror serve --config %s 2>>%s &", x, r.mirrorCfgPath, r.path("mirror", "mirror.log")),
		fmt.Sprintf("  %s agent run --config %s 2>>%s &", x, r.agentCfgPath, r.path("agent", "agent.log")),
		fmt.Sprintf("  %s scan --clamd unix://%s %s", x, sock, r.samplesDir),
		fmt.Sprintf("  %s scan --config %s              # scan.paths, with the agent's history", x, r.agentCfgPath),
		fmt.Sprintf("  %s mirror status --config %s", x, r.mirrorCfgPath),
		fmt.Sprintf("  curl -s %s https://%s/api/v1/manifest", client, r.mirrorAddr),
		fmt.Sprintf("  curl -s http://%s/metrics | grep ^avfleet_agent_definitions", r.metricsAddr),
		fmt.Sprintf("  %s cvd info --key %s.pub.pem %s", x, r.keyPrefix, r.path("databases", "v2", dbName+".cvd")),
		"",
		"When done: kill %1 %2 (the jobs above) and rm -rf " + r.dir,
	}
	for _, l := range lines {
		r.out.line("%s", l)
	}
}

// printer writes the story: numbered steps and indented details.
type printer struct{ w io.Writer }

func (p *printer) line(format string, a ...any) { fmt.Fprintf(p.w, format+"\n", a...) }

func (p *printer) step(n int, title string) {
	fmt.Fprintf(p.w, "\n[%d/%d] %s\n", n, steps, title)
}

func (p *printer) detail(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	if s == "" {
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintf(p.w, "      %s\n", s)
}

// stopPart cancels a part started with stop and waits up to 30 s for its
// Run to return on done; nothing to do if it was never started.
func (r *run) stopPart(name string, stop context.CancelFunc, done chan error) {
	if stop == nil {
		return
	}
	stop()
	select {
	case e := <-done:
		if e != nil {
			r.out.line("%s: %v", name, e)
		}
	case <-time.After(30 * time.Second):
		r.out.line("the %s did not stop within 30 s", name)
	}
}
