package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/avfleet/avfleet/internal/agent/clamdproc"
	"github.com/avfleet/avfleet/internal/agent/limits"
	"github.com/avfleet/avfleet/internal/agent/updater"
	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/report"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// Options configure the agent daemon.
type Options struct {
	Config *config.Agent
	Logger *slog.Logger
	// Registry is what the metrics listener serves; nil: a new registry with
	// the Go and process collectors.
	Registry *prometheus.Registry
	// Parts run beside the agent's own once clamd answers (scheduled scans).
	Parts []Part

	// Knobs for tests and benchmarks; zero values are the production defaults.
	BackoffMin, BackoffMax time.Duration // mirror retries (5 s .. 10 min)
	PollInterval           time.Duration // 24h/checks_per_day
	ClamdBackoff           time.Duration // clamd restart backoff minimum (1 s)
}

// Part is a piece of the daemon added by another package, such as the
// scheduled scanner: Run is started once definitions are installed and
// clamd answers, and must return when ctx ends. A non-nil error stops the
// agent.
type Part struct {
	Name string
	Run  func(ctx context.Context, rt *Runtime) error
}

// Runtime is what the daemon has set up, for Parts.
type Runtime struct {
	Config     *config.Agent
	Node       string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Reporter takes scan summaries and detections: it logs them and passes
	// them to syslog, the SQLite history, the scan metrics and the report to
	// the mirror.
	Reporter *report.Reporter
	History  *report.History
	Clamd    *clamd.Client    // the clamd to scan with
	Limits   *limits.Group    // nil when no limits are configured
	Updater  *updater.Updater // installed versions: Updater.Status().Installed
	DBDir    string           // clamd's database directory
}

// Agent is the node agent daemon.
type Agent struct {
	o        Options
	cfg      *config.Agent
	log      *slog.Logger
	node     string
	reg      *prometheus.Registry
	store    *updater.Store
	upd      *updater.Updater
	clients  []*updater.Client
	reporter *report.Reporter
	nodeRep  *NodeReporter
	history  *report.History
	syslog   *report.Syslog
	metricsL net.Listener
	m        *agentMetrics

	managed  *clamdproc.Clamd
	clamdCli *clamd.Client
	// startFailed receives why a managed clamd exited before it ever
	// answered: at start, with an unconfirmed set, that means clamd cannot
	// load the set.
	startFailed chan error

	mu         sync.Mutex
	limits     *limits.Group
	clamdReady bool // the running clamd has answered PING
}

// New checks everything that can be checked before starting: the node name
// against the client certificate, the TLS files, the trust keys, state_dir,
// the metrics address. Errors here are configuration errors (exit 2).
func New(o Options) (*Agent, error) {
	cfg := o.Config
	if cfg == nil {
		return nil, errors.New("agent: no configuration")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{o: o, cfg: cfg, log: log, node: cfg.NodeName, startFailed: make(chan error, 1)}
	if err := CheckIdentity(a.node, cfg.Mirror.Cert, time.Now()); err != nil {
		return nil, err
	}
	tlsConf, err := tlsutil.ClientConfig(cfg.Mirror.CA, cfg.Mirror.Cert, cfg.Mirror.Key)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	for _, u := range cfg.Mirror.URLs {
		c, err := updater.NewClient(u, tlsConf, cfg.Mirror.Timeout.D())
		if err != nil {
			return nil, fmt.Errorf("mirror.urls: %w", err)
		}
		a.clients = append(a.clients, c)
	}
	trust, err := updater.TrustFromConfig(cfg.Trust)
	if err != nil {
		return nil, err
	}
	if a.store, err = updater.OpenStore(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	a.reg = o.Registry
	if a.reg == nil {
		a.reg = prometheus.NewRegistry()
		a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	um, err := updater.NewMetrics(a.reg)
	if err != nil {
		return nil, err
	}
	if a.m, err = newAgentMetrics(a.reg); err != nil {
		return nil, err
	}
	a.m.setCertificates(WarnCertExpiry(log, cfg.Mirror, time.Now()))
	scanMetrics, err := report.NewScanMetrics(a.reg)
	if err != nil {
		return nil, err
	}

	closeAll := func() {
		if a.history != nil {
			a.history.Close()
		}
		if a.syslog != nil {
			a.syslog.Close()
		}
		if a.metricsL != nil {
			a.metricsL.Close()
		}
	}
	if a.history, err = report.OpenHistory(filepath.Join(cfg.StateDir, report.HistoryFile)); err != nil {
		closeAll()
		return nil, err
	}
	var sinks []report.Sink
	if cfg.Report.Syslog != "" {
		target, err := report.ParseSyslogURL(cfg.Report.Syslog)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("report.syslog: %w", err)
		}
		if a.syslog, err = report.NewSyslog(target, report.SyslogOptions{Hostname: a.node, Logger: log, Registerer: a.reg}); err != nil {
			closeAll()
			return nil, fmt.Errorf("report.syslog: %w", err)
		}
		sinks = append(sinks, a.syslog)
	}
	posters := make([]poster, len(a.clients))
	for i, c := range a.clients {
		posters[i] = c
	}
	a.nodeRep = newNodeReporter(a.node, posters, a.definitionsStatus, a.clamdVersion, log)
	sinks = append(sinks, a.history, scanMetrics, a.nodeRep)
	a.reporter = report.NewReporter(log, a.node, sinks...)

	a.upd, err = updater.New(updater.Options{
		Clients:      a.clients,
		Store:        a.store,
		Verifier:     updater.CVDVerifier{Trust: trust},
		Allowlist:    updater.Allowlist{Signatures: cfg.Allowlist.Signatures, SHA256: cfg.Allowlist.SHA256},
		FetchSign:    cfg.Trust.SignCertsDir != "",
		ChecksPerDay: cfg.Mirror.ChecksPerDay,
		PollInterval: o.PollInterval,
		StaleAfter:   cfg.Report.StaleAfter.D(),
		BackoffMin:   o.BackoffMin,
		BackoffMax:   o.BackoffMax,
		Events:       a.reporter,
		Metrics:      um,
		Logger:       log,
	})
	if err != nil {
		closeAll()
		return nil, err
	}

	switch cfg.Clamd.Mode {
	case "managed":
		if _, err := clamdproc.LookPath(cfg.Clamd.Binary); err != nil {
			closeAll()
			return nil, fmt.Errorf("clamd.binary: %w", err)
		}
		a.managed, err = clamdproc.New(clamdproc.Options{
			Binary:      cfg.Clamd.Binary,
			StateDir:    cfg.StateDir,
			DatabaseDir: a.store.DBDir(),
			MaxThreads:  maxThreads(cfg),
			MemoryLimit: cfg.Limits.MemoryBytes,
			OnStart:     a.placeClamd,
			OnEvent:     a.clamdEvent,
			Logger:      log,
			MinBackoff:  o.ClamdBackoff,
		})
		if err != nil {
			closeAll()
			return nil, err
		}
		a.clamdCli = a.managed.Client()
	case "external":
		if a.clamdCli, err = clamd.NewClient(cfg.Clamd.Socket); err != nil {
			closeAll()
			return nil, fmt.Errorf("clamd.socket: %w", err)
		}
	}
	if cfg.Report.MetricsListen != "" {
		if a.metricsL, err = net.Listen("tcp", cfg.Report.MetricsListen); err != nil {
			closeAll()
			return nil, fmt.Errorf("report.metrics_listen: %w", err)
		}
	}
	return a, nil
}

// Reconfigure applies a re-read agent.yaml (SIGHUP): the allowlist takes
// effect at once (a new set is installed and clamd reloaded); any other
// change needs a restart, and the agent says which.
func (a *Agent) Reconfigure(cfg *config.Agent) error {
	al := updater.Allowlist{Signatures: cfg.Allowlist.Signatures, SHA256: cfg.Allowlist.SHA256}
	if err := a.upd.SetAllowlist(al); err != nil {
		return err
	}
	a.upd.Trigger()
	old, cur := *a.cfg, *cfg
	old.Allowlist, cur.Allowlist = config.Allowlist{}, config.Allowlist{}
	ob, _ := old.Effective()
	nb, _ := cur.Effective()
	if string(ob) != string(nb) {
		a.log.Warn("configuration reloaded: the allowlist is applied now; other changed settings take effect when the agent restarts", "config", cfg.Path())
	} else {
		a.log.Info("configuration reloaded: allowlist applied", "config", cfg.Path())
	}
	return nil
}

// Close releases what New opened, for an Agent that is not Run (Run
// releases it itself).
func (a *Agent) Close() {
	a.history.Close()
	if a.syslog != nil {
		a.syslog.Close()
	}
	if a.metricsL != nil {
		a.metricsL.Close()
	}
	for _, c := range a.clients {
		c.Close()
	}
}

// maxThreads is clamd.max_threads, or the cores limits.cpu_percent allows,
// or the CPUs of the machine.
func maxThreads(cfg *config.Agent) int {
	if cfg.Clamd.MaxThreads > 0 {
		return cfg.Clamd.MaxThreads
	}
	n := runtime.NumCPU()
	if p := cfg.Limits.CPUPercent; p > 0 {
		n = min(n, max(1, (p+99)/100))
	}
	return n
}

// Updater is the agent's updater (tests, `agent update`).
func (a *Agent) Updater() *updater.Updater { return a.upd }

// MetricsAddr is where the metrics listener listens ("" when off).
func (a *Agent) MetricsAddr() string {
	if a.metricsL == nil {
		return ""
	}
	return a.metricsL.Addr().String()
}

// ClamdAddr is the clamd the agent uses (unix:///... or tcp://...).
func (a *Agent) ClamdAddr() string { return a.clamdCli.Addr.String() }

// Clamd is the managed clamd (nil in external mode).
func (a *Agent) Clamd() *clamdproc.Clamd { return a.managed }

// Store is the definitions store.
func (a *Agent) Store() *updater.Store { return a.store }

func (a *Agent) definitionsStatus() (map[string]uint, time.Time, string) {
	s := a.upd.Status()
	return s.Installed, s.LastSuccess, s.LastError
}

func (a *Agent) clamdVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := a.clamdCli.Version(ctx)
	if err != nil {
		return ""
	}
	return v.Raw
}

// placeClamd puts a freshly started clamd into the limits cgroup.
func (a *Agent) placeClamd(pid int) error {
	a.mu.Lock()
	g := a.limits
	a.mu.Unlock()
	if g == nil {
		return nil
	}
	if err := g.Add(pid); err != nil {
		return fmt.Errorf("put clamd (pid %d) into its cgroup: %w", pid, err)
	}
	return nil
}

func (a *Agent) clamdEvent(e clamdproc.Event) {
	switch e.Kind {
	case clamdproc.EventStarted:
		a.mu.Lock()
		a.clamdReady = false
		a.mu.Unlock()
	case clamdproc.EventReady:
		a.mu.Lock()
		a.clamdReady = true
		a.mu.Unlock()
		a.m.up.Set(1)
	case clamdproc.EventExited:
		a.m.up.Set(0)
		a.mu.Lock()
		ready := a.clamdReady
		a.mu.Unlock()
		if e.Exit != nil && !e.Exit.Requested && !ready {
			select {
			case a.startFailed <- startFailure(e.Exit):
			default: // one is waiting to be read already
			}
		}
		if e.Exit != nil && !e.Exit.Requested {
			a.m.restarts.Inc()
			if e.Exit.OOM != clamdproc.OOMNo {
				a.m.oomKills.WithLabelValues(e.Exit.OOM.String()).Inc()
			}
		}
	}
}

// Run runs the daemon until ctx ends (SIGTERM), then stops clamd and
// returns nil; an error means a part could not go on.
func (a *Agent) Run(ctx context.Context) error {
	defer a.Close() // runs last, after every part has stopped
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := &group{cancel: cancel}
	defer g.stop(nil) // every return: cancel the parts, then wait for them

	if a.metricsL != nil {
		g.go1("metrics", func(ctx context.Context) error { return a.serveMetrics(ctx) }, ctx)
	}
	if a.syslog != nil {
		g.go1("syslog", a.syslog.Run, ctx)
	}
	g.go1("mirror report", a.nodeRep.Run, ctx)
	g.go1("certificate expiry", a.certExpiryLoop, ctx)
	if d := a.cfg.Report.HistoryDays; d > 0 { // 0: a configuration that skipped Validate; keep everything
		g.go1("history retention", report.Retention{History: a.history, Logger: a.log,
			Keep: time.Duration(d) * 24 * time.Hour}.Run, ctx)
	}

	lim := a.cfg.Limits
	if lim.CPUPercent > 0 || lim.MemoryBytes > 0 {
		grp, warning, err := limits.New(limits.Config{Name: cgroupName(a.node), CPUPercent: lim.CPUPercent, MemoryBytes: lim.MemoryBytes})
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		if warning != nil {
			a.log.Warn("limits are not enforced", "err", warning)
		}
		// The agent's own scanning (walking, opening, talking to clamd)
		// runs under the limits too: DESIGN's "clamd and scan work".
		if err := grp.AddSelf(); err != nil {
			a.log.Warn("limits: the agent's own scanning is not limited", "err", err)
		}
		a.log.Info("limits", "mode", string(grp.Mode()), "cpu_percent", lim.CPUPercent, "memory_bytes", lim.MemoryBytes, "cgroups", grp.Paths(), "placement", grp.Placement())
		a.mu.Lock()
		a.limits = grp
		a.mu.Unlock()
		defer func() {
			if err := grp.Close(); err != nil {
				a.log.Warn("remove the agent's cgroup", "err", err)
			}
		}()
	}

	if err := a.firstDefinitions(ctx); err != nil {
		if ctx.Err() != nil {
			return g.stop(nil)
		}
		return g.stop(err)
	}

	pending, err := a.upd.Pending()
	if err != nil {
		a.log.Warn("unreadable record of an unconfirmed set", "err", err)
	}
	if pending != nil {
		a.log.Warn("clamd was never seen to load the installed set; checking it now, and putting the previous set back if clamd cannot load it",
			"set", pending.Set, "previous", pending.Prev, "installed_at", pending.Time)
	}

	if a.managed != nil {
		g.go1("clamd", a.managed.Run, ctx)
		start := time.Now()
		tick := time.NewTicker(30 * time.Second)
		ready := make(chan error, 1)
		go func() { ready <- a.managed.Ready(ctx) }()
	wait:
		for {
			select {
			case err := <-ready:
				if err != nil {
					if ctx.Err() != nil {
						tick.Stop()
						return g.stop(nil)
					}
					tick.Stop()
					return g.stop(fmt.Errorf("clamd: %w", err))
				}
				break wait
			case cause := <-a.startFailed:
				// The supervisor restarts clamd after its backoff; by then
				// db names the previous set (a restart that raced the
				// switch back fails once more and is restarted again).
				if pending != nil {
					a.rollBack(ctx, pending, cause)
					pending = nil
				}
			case <-tick.C:
				a.log.Info("waiting for clamd to load its databases", "for", time.Since(start).Round(time.Second))
			}
		}
		tick.Stop()
		a.log.Info("clamd is ready", "socket", a.managed.Socket(), "after", time.Since(start).Round(time.Millisecond))
		if pending != nil {
			if err := a.upd.ConfirmPending(ctx, pending); err != nil {
				a.log.Warn("clear the record of the unconfirmed set", "err", err)
			} else {
				a.log.Info("clamd loaded the unconfirmed set", "set", pending.Set)
			}
		}
		a.upd.SetReloader(managedReloader{a.managed})
	} else {
		if err := a.clamdCli.Ping(ctx); err != nil {
			a.log.Warn("external clamd does not answer yet; definitions are installed and it is asked to reload after each update", "socket", a.clamdCli.Addr.String(), "err", err)
		}
		rel := updater.SocketReloader{Client: a.clamdCli}
		a.upd.SetReloader(rel)
		if pending != nil {
			a.confirmExternal(ctx, rel, pending)
		}
	}
	g.go1("clamd health", a.watchClamd, ctx)
	g.go1("updater", a.upd.Run, ctx)

	rt := &Runtime{Config: a.cfg, Node: a.node, Logger: a.log, Registerer: a.reg, Reporter: a.reporter, History: a.history,
		Clamd: a.clamdCli, Limits: a.limits, Updater: a.upd, DBDir: a.store.DBDir()}
	for _, p := range a.o.Parts {
		g.go1(p.Name, func(ctx context.Context) error { return p.Run(ctx, rt) }, ctx)
	}
	a.log.Info("agent running", "node", a.node, "definitions", a.upd.Status().Installed, "clamd", a.clamdCli.Addr.String(), "metrics", a.MetricsAddr())
	<-ctx.Done()
	return g.stop(nil)
}

// firstDefinitions installs a first set before clamd starts: clamd refuses
// to start on an empty database directory. While the mirror cannot be
// reached it keeps trying, with backoff, and says so.
func (a *Agent) firstDefinitions(ctx context.Context) error {
	cur, err := a.store.Current()
	if err != nil {
		return err
	}
	if cur != nil {
		a.log.Info("installed definitions", "set", cur.Name, "versions", cur.Versions())
		return nil
	}
	a.upd.SetReloader(updater.NoReload{})
	for attempt := 1; ; attempt++ {
		res, err := a.upd.Cycle(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if res != nil && res.Updated {
			// Possibly not everything (a database that failed to verify is
			// left out and retried by the updater), but clamd can start.
			a.log.Info("first definitions installed", "versions", res.New, "mirror_url", res.Source)
			return nil
		}
		d := backoff(attempt, a.o.BackoffMin, a.o.BackoffMax)
		a.log.Warn("no definitions installed yet: clamd starts after the first successful update; retrying",
			"attempt", attempt, "in", d.Round(time.Second), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

func backoff(n int, lo, hi time.Duration) time.Duration {
	if lo <= 0 {
		lo = 5 * time.Second
	}
	if hi <= 0 {
		hi = 10 * time.Minute
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// startFailure says why a clamd exited before it answered, with its error
// lines (clamd names the database file it could not load).
func startFailure(e *clamdproc.Exit) error {
	var lines []string
	for _, l := range e.LastLines {
		if strings.HasPrefix(l, "ERROR:") || strings.HasPrefix(l, "LibClamAV Error:") {
			lines = append(lines, l)
		}
	}
	msg := fmt.Sprintf("clamd (pid %d) exited before it answered: %s", e.PID, e)
	if len(lines) > 0 {
		msg += " (" + strings.Join(lines, "; ") + ")"
	}
	return errors.New(msg)
}

// rollBack puts the previous set back after clamd could not load the
// unconfirmed one; the updater reports it as a failed update.
func (a *Agent) rollBack(ctx context.Context, p *updater.Pending, cause error) {
	prev, err := a.upd.RollBackPending(ctx, p, cause)
	switch {
	case err != nil:
		a.log.Error("the unconfirmed set stays installed", "set", p.Set, "err", err)
	case prev != nil:
		a.log.Warn("put back the previous set", "set", prev.Name, "versions", prev.Versions(), "refused", p.Set)
	}
}

// confirmExternal checks an unconfirmed set on an external clamd the way an
// update is confirmed (RELOAD, then VERSION); when that fails, the previous
// set is put back and clamd reloaded. A clamd that does not answer at all
// counts as a failure too: putting back a set clamd ran before is safe, and
// the next update installs the newer one again.
func (a *Agent) confirmExternal(ctx context.Context, rel updater.SocketReloader, p *updater.Pending) {
	cur, err := a.store.Current()
	if err != nil {
		a.log.Warn("check the unconfirmed set", "err", err)
		return
	}
	_, err = rel.Reload(ctx, cur.Versions())
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		if err := a.upd.ConfirmPending(ctx, p); err != nil {
			a.log.Warn("clear the record of the unconfirmed set", "err", err)
		}
		a.log.Info("clamd loaded the unconfirmed set", "set", p.Set)
		return
	}
	a.rollBack(ctx, p, err)
	if prev, err := a.store.Current(); err == nil && prev != nil && prev.Name != p.Set {
		if _, err := rel.Reload(ctx, prev.Versions()); err != nil && ctx.Err() == nil {
			a.log.Warn("external clamd did not confirm the previous set either", "set", prev.Name, "err", err)
		}
	}
}

// certExpiryLoop repeats the certificate expiry warning once a day, so an
// agent that runs for months says so in its log when renewal comes due.
func (a *Agent) certExpiryLoop(ctx context.Context) error {
	t := time.NewTicker(24 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			WarnCertExpiry(a.log, a.cfg.Mirror, now)
		}
	}
}

// watchClamd pings clamd every few seconds for avfleet_agent_clamd_up (an
// external clamd has no other signal).
func (a *Agent) watchClamd(ctx context.Context) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := a.clamdCli.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.m.up.Set(0)
		} else {
			a.m.up.Set(1)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *Agent) serveMetrics(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(a.metricsL) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("metrics listener %s: %w", a.metricsL.Addr(), err)
	}
}

var cgroupUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// cgroupName is the agent's cgroup under avfleet/: one per node name, so two
// agents on one host (tests, a host and a container) do not share limits.
func cgroupName(node string) string {
	n := "agent-" + cgroupUnsafe.ReplaceAllString(node, "_")
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// managedReloader confirms reloads by clamd's log line (clamdproc), and
// recovers a clamd whose failed reload freed its engine by restarting it.
type managedReloader struct{ c *clamdproc.Clamd }

func (r managedReloader) Reload(ctx context.Context, _ map[string]uint) (int, error) {
	return r.c.Reload(ctx)
}

func (r managedReloader) RestorePrevious(ctx context.Context, reloadErr error, _ map[string]uint) error {
	var re *clamdproc.ReloadError
	if errors.As(reloadErr, &re) && re.EngineUnloaded {
		return r.c.Restart(ctx)
	}
	_, err := r.c.Reload(ctx)
	return err
}

// group runs the daemon's goroutines: the first error cancels the rest.
type group struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error
}

func (g *group) go1(name string, f func(context.Context) error, ctx context.Context) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(ctx); err != nil && ctx.Err() == nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = fmt.Errorf("%s: %w", name, err)
			}
			g.mu.Unlock()
			g.cancel()
		}
	}()
}

// stop cancels everything, waits, and returns the first error.
func (g *group) stop(err error) error {
	g.cancel()
	g.wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	return err
}

func (g *group) wait() { g.wg.Wait() }
