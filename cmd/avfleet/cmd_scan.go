package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/agent"
	"github.com/avfleet/avfleet/internal/agent/scan"
	"github.com/avfleet/avfleet/internal/agent/schedule"
	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/report"
)

func init() {
	register(newScanCommand)
	registerAgentPart(scheduledScansPart)
}

// scanDefaultConfig is where `avfleet scan` finds the agent's configuration
// (and through it the agent's clamd) when neither --config nor --clamd is given.
const scanDefaultConfig = "/etc/avfleet/agent.yaml"

// managedSocketName is clamdproc.SocketName: a managed clamd listens on
// STATE_DIR/clamd.sock.
const managedSocketName = "clamd.sock"

// dbDirName is the updater's database directory in state_dir (a symlink to
// the installed set), which clamd loads.
const dbDirName = "db"

type scanOptions struct {
	config     string
	clamd      string
	containers bool
	json       bool
	noProgress bool
}

func newScanCommand(g *globalOptions) *cobra.Command {
	var o scanOptions
	c := &cobra.Command{
		Use:   "scan [--config F | --clamd ADDR] [--containers] [--json] [--no-progress] [PATH...]",
		Short: "Scan files and containers now through clamd",
		Long: `Scan the named paths (default: the agent's scan.paths) through clamd, the way the
agent's scheduled scans do: each file is opened once, without following symlinks,
and its descriptor handed to clamd (FILDES over a unix socket; INSTREAM over TCP).
FIFOs, sockets and devices are skipped without blocking; files that vanish, cannot
be read or exceed clamd's limits are counted with the reason and the scan goes on.

clamd is the agent's, from --config (default /etc/avfleet/agent.yaml: the managed
clamd's STATE_DIR/clamd.sock, or clamd.socket in external mode), or --clamd
unix:///path | tcp://host:port. With a configuration the scan also uses its
exclude, one_filesystem, incremental cache, action (notify, copy, move, remove) and
quarantine_dir, and records the scan in the agent's history and syslog.
--containers also scans every running container's root (found through /proc).

Output: one line per infected file, "PATH: SIGNATURE FOUND" (a file in a container
is written CONTAINER:PATH), one per file that could not be scanned, "PATH: REASON
ERROR", then a summary like clamscan's. --json writes JSON lines instead: a
"detection" object per infected file, an "error" object per file not scanned for an
error, and a final "scan" summary. A progress bar is drawn on stderr when it is a
terminal (--no-progress turns it off).

Exit codes: 0 nothing found, 1 infected files found, 2 error (some files could not
be scanned, the scan could not run, or a usage error), as clamscan.`,
		Example: `  avfleet scan /home /srv
  avfleet scan --containers
  avfleet scan --clamd unix:///run/clamav/clamd.ctl --no-progress /tmp/upload
  avfleet scan --config /etc/avfleet/agent.yaml --json /var/www | jq .`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd.Context(), g, o, cmd.Flags().Changed("config"), args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.config, "config", scanDefaultConfig, "agent configuration (clamd, exclude, incremental, action)")
	f.StringVar(&o.clamd, "clamd", "", "clamd address: unix:///path or tcp://host:port (default: the agent's clamd)")
	f.BoolVar(&o.containers, "containers", false, "also scan every running container's root filesystem")
	f.BoolVar(&o.json, "json", false, "write JSON lines instead of text")
	f.BoolVar(&o.noProgress, "no-progress", false, "never draw a progress bar")
	return c
}

func runScan(ctx context.Context, g *globalOptions, o scanOptions, configSet bool, args []string) error {
	// The configuration: named, or the default one if it exists; without
	// one (only --clamd), the defaults apply and nothing is cached or moved.
	var cfg *config.Agent
	if o.clamd == "" || configSet {
		c, err := config.LoadAgent(o.config)
		switch {
		case err == nil:
			cfg = c
		case !configSet && errors.Is(err, os.ErrNotExist):
			return usagef("no clamd to scan with: %s does not exist; name the agent's configuration with --config F or a clamd with --clamd unix:///path or tcp://host:port", o.config)
		default:
			return withCode(exitError, err)
		}
	}
	addr := o.clamd
	if addr == "" {
		addr = cfg.Clamd.Socket
		if cfg.Clamd.Mode == "managed" {
			addr = "unix://" + filepath.Join(cfg.StateDir, managedSocketName)
		}
	}
	cli, err := clamd.NewClient(addr)
	if err != nil {
		return usagef("--clamd: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ver, err := cli.Version(pctx)
	cancel()
	if err != nil {
		return withCode(exitError, fmt.Errorf("clamd at %s does not answer: %w (is the agent running? see docs/troubleshooting.md)", addr, err))
	}

	paths := make([]string, 0, len(args))
	for _, a := range args {
		p, err := filepath.Abs(a)
		if err != nil {
			return usagef("%s: %v", a, err)
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 && cfg != nil {
		paths = cfg.Scan.Paths
	}
	if len(paths) == 0 && !o.containers {
		return usagef("name the PATHs to scan (or --containers)")
	}

	out := newScanPrinter(os.Stdout, os.Stderr, o.json, !o.noProgress && !o.json && isTerminal(os.Stderr), g.logger)
	sc, opts, closeAll, err := scanSetup(ctx, g, cfg, cli, ver, report.SinkFunc(out.detection))
	if err != nil {
		return withCode(exitError, err)
	}
	defer closeAll()
	opts.Paths = paths
	opts.Containers = o.containers
	opts.OnFile = out.file
	if out.bar {
		opts.Count = true
		opts.Progress = out.progress
	}
	sum, runErr := sc.Run(ctx, opts)
	out.summary(sum, ver)
	switch {
	case sum.Detections > 0:
		return withCode(exitFailure, nil)
	case runErr != nil:
		return withCode(exitError, fmt.Errorf("scan %s: %w", sum.ScanID, runErr))
	case sum.Errors > 0:
		return withCode(exitError, nil)
	}
	return nil
}

// scanSetup builds the scanner from the configuration (or the defaults when
// there is none) and the options that depend on the installed definitions.
// printer gets every event after the agent's own sinks.
func scanSetup(ctx context.Context, g *globalOptions, cfg *config.Agent, cli *clamd.Client, ver clamd.Version, printer report.Sink) (*scan.Scanner, scan.Options, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	opts := scan.Options{Trigger: report.TriggerOnDemand}
	eng := scan.ClamdEngine(cli)
	if cfg == nil {
		d := config.DefaultAgent()
		sc, err := scan.New(scan.Config{Engine: eng, Exclude: d.Scan.Exclude, Sink: printer, Logger: g.logger})
		if err != nil {
			return nil, opts, closeAll, err
		}
		closers = append(closers, func() { sc.Close() })
		opts.DBVersions = dailyVersion(ver)
		return sc, opts, closeAll, nil
	}

	// Results go where the agent's go: its history and syslog. The log
	// lines of the Reporter are for --log-format json (machine readers);
	// a person reads the printed lines.
	var sinks []report.Sink
	if st, err := os.Stat(cfg.StateDir); err == nil && st.IsDir() {
		h, err := report.OpenHistory(filepath.Join(cfg.StateDir, report.HistoryFile))
		if err != nil {
			g.logger.Warn("scan not recorded in the history", "err", err)
		} else {
			closers = append(closers, func() { h.Close() })
			sinks = append(sinks, h)
		}
	}
	if cfg.Report.Syslog != "" {
		target, err := report.ParseSyslogURL(cfg.Report.Syslog)
		if err != nil {
			return nil, opts, closeAll, err
		}
		sl, err := report.NewSyslog(target, report.SyslogOptions{Hostname: cfg.NodeName, Logger: g.logger})
		if err != nil {
			return nil, opts, closeAll, err
		}
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { sl.Run(sctx); close(done) }()
		closers = append(closers, func() { sl.Close(); cancel(); <-done })
		sinks = append(sinks, sl)
	}
	sinks = append(sinks, printer)
	rlog := slog.New(slog.DiscardHandler)
	if g.logFormat == "json" {
		rlog = g.logger
	}
	node := cfg.NodeName
	if node == "" {
		node, _ = os.Hostname()
	}
	// An on-demand scan is not paced: it is somebody waiting for it.
	sc, err := scan.FromAgent(cfg, eng, report.NewReporter(rlog, node, sinks...), g.logger, nil)
	if err != nil {
		return nil, opts, closeAll, err
	}
	closers = append(closers, func() { sc.Close() })

	opts.DBVersions = dailyVersion(ver)
	key, versions, loaded, err := scan.DefinitionsKey(filepath.Join(cfg.StateDir, dbDirName), ver.Raw)
	switch {
	case err != nil:
		if cfg.Scan.Incremental {
			g.logger.Info("incremental scan off: the installed definitions cannot be read", "err", err)
		}
	case !loaded:
		g.logger.Info("incremental scan off: clamd has not loaded the installed definitions yet", "clamd", ver.Raw, "installed", versions)
	default:
		opts.Definitions = key
	}
	if len(versions) > 0 {
		opts.DBVersions = versions
	}
	return sc, opts, closeAll, nil
}

func dailyVersion(v clamd.Version) map[string]uint {
	if v.Daily > 0 {
		return map[string]uint{"daily": uint(v.Daily)}
	}
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// scanPrinter writes what an operator sees: detections and errors on
// stdout, the progress bar on stderr, then the summary.
type scanPrinter struct {
	mu       sync.Mutex
	out, err io.Writer
	json     bool
	bar      bool
	barShown bool
	log      *slog.Logger
}

func newScanPrinter(out, errw io.Writer, jsonOut, bar bool, log *slog.Logger) *scanPrinter {
	return &scanPrinter{out: out, err: errw, json: jsonOut, bar: bar, log: log}
}

// clearBar removes the progress line before other output. Callers hold mu.
func (p *scanPrinter) clearBar() {
	if p.barShown {
		fmt.Fprint(p.err, "\r\x1b[K")
		p.barShown = false
	}
}

func displayPath(path, container, cpath string) string {
	if container != "" {
		return container + ":" + cpath
	}
	return path
}

func (p *scanPrinter) detection(_ context.Context, ev report.Event) error {
	d, ok := ev.(report.Detection)
	if !ok {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearBar()
	if p.json {
		writeJSONLine(p.out, "detection", d)
		return nil
	}
	where := displayPath(d.Path, d.Container, d.ContainerPath)
	fmt.Fprintf(p.out, "%s: %s FOUND\n", where, d.Signature)
	switch {
	case d.ActionResult == report.ActionFailed:
		fmt.Fprintf(p.out, "%s: %s failed: %s\n", where, d.Action, d.ActionError)
	case d.Action == report.ActionMove:
		fmt.Fprintf(p.out, "%s: moved to quarantine as %s\n", where, d.QuarantineID)
	case d.Action == report.ActionCopy:
		fmt.Fprintf(p.out, "%s: copied to quarantine as %s\n", where, d.QuarantineID)
	case d.Action == report.ActionRemove:
		fmt.Fprintf(p.out, "%s: Removed.\n", where)
	}
	return nil
}

// file reports what was not scanned: errors on stdout like clamdscan,
// skips that may matter in the log, the routine ones at debug level.
func (p *scanPrinter) file(ev scan.FileEvent) {
	if ev.Signature != "" {
		return // printed by detection, with the action's outcome
	}
	where := displayPath(ev.Path, ev.Container, ev.ContainerPath)
	if !scan.IsError(ev.Reason) {
		level := slog.LevelDebug
		switch ev.Reason {
		case scan.ReasonTooLarge, scan.ReasonClamdLimit:
			level = slog.LevelInfo
		}
		p.log.Log(context.Background(), level, "not scanned", "path", where, "reason", ev.Reason, "detail", ev.Err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearBar()
	if p.json {
		writeJSONLine(p.out, "error", struct {
			Path          string `json:"path"`
			Container     string `json:"container"`
			ContainerPath string `json:"container_path"`
			Reason        string `json:"reason"`
			Error         string `json:"error"`
		}{ev.Path, ev.Container, ev.ContainerPath, ev.Reason, ev.Err})
		return
	}
	fmt.Fprintf(p.out, "%s: %s: %s ERROR\n", where, ev.Reason, ev.Err)
}

func (p *scanPrinter) progress(pr scan.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rate := 0.0
	if s := pr.Elapsed.Seconds(); s > 0 {
		rate = float64(pr.DoneBytes) / s
	}
	line := fmt.Sprintf("%d files", pr.DoneFiles)
	if pr.TotalFiles >= 0 {
		line = fmt.Sprintf("%d/%d files", pr.DoneFiles, pr.TotalFiles)
	}
	line += "  " + humanBytes(pr.DoneBytes)
	if pr.TotalBytes >= 0 {
		line += "/" + humanBytes(pr.TotalBytes)
	}
	line += fmt.Sprintf("  %s/s", humanBytes(int64(rate)))
	if pr.TotalBytes > 0 && rate > 0 && pr.DoneBytes <= pr.TotalBytes {
		eta := time.Duration(float64(pr.TotalBytes-pr.DoneBytes) / rate * float64(time.Second))
		line += "  ETA " + eta.Round(time.Second).String()
	}
	if pr.Detections > 0 {
		line += fmt.Sprintf("  FOUND %d", pr.Detections)
	}
	if pr.Errors > 0 {
		line += fmt.Sprintf("  errors %d", pr.Errors)
	}
	fmt.Fprintf(p.err, "\r\x1b[K%s", line)
	p.barShown = true
}

func (p *scanPrinter) summary(s report.ScanSummary, ver clamd.Version) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearBar()
	if p.json {
		writeJSONLine(p.out, "scan", s)
		return
	}
	w := p.out
	fmt.Fprintf(w, "\n----------- SCAN SUMMARY -----------\n")
	if ver.Engine != "" {
		fmt.Fprintf(w, "Engine version: %s\n", ver.Engine)
	}
	fmt.Fprintf(w, "Scanned files: %d\n", s.Files)
	fmt.Fprintf(w, "Infected files: %d\n", s.Detections)
	if s.IncrementalHits > 0 {
		fmt.Fprintf(w, "Unchanged files: %d (clean in an earlier scan with these definitions)\n", s.IncrementalHits)
	}
	if s.Containers > 0 {
		fmt.Fprintf(w, "Containers: %d\n", s.Containers)
	}
	if s.Errors > 0 {
		fmt.Fprintf(w, "Total errors: %d\n", s.Errors)
	}
	if len(s.SkippedByReason) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.SkippedByReason)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.SkippedByReason[k]))
		}
		fmt.Fprintf(w, "Not scanned: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "Data scanned: %.2f MB\n", float64(s.Bytes)/(1<<20))
	d := s.Duration
	fmt.Fprintf(w, "Time: %.3f sec (%d m %d s)\n", d.Seconds(), int(d.Minutes()), int(d.Seconds())%60)
	fmt.Fprintf(w, "Start Date: %s\n", s.Start.Local().Format("2006:01:02 15:04:05"))
	fmt.Fprintf(w, "End Date:   %s\n", s.End.Local().Format("2006:01:02 15:04:05"))
	if s.Error != "" && s.Result != report.ResultCancelled {
		fmt.Fprintf(p.err, "avfleet: scan failed: %s\n", s.Error)
	}
}

// writeJSONLine writes v's JSON object as one line with an "event" field added.
func writeJSONLine(w io.Writer, event string, v any) {
	inner, _ := json.Marshal(v)
	m := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(inner))
	dec.UseNumber() // counts stay exact
	dec.Decode(&m)
	m["event"] = event
	b, _ := json.Marshal(m)
	w.Write(append(b, '\n'))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// scheduleStateFile keeps the last completed scheduled scan in state_dir.
const scheduleStateFile = "schedule.json"

// scheduledScansPart is the agent daemon's scanner: scan.paths and the
// containers on scan.schedule, one scan at a time, results through the
// agent's Reporter (log, syslog, history, metrics, report to the mirror).
func scheduledScansPart(_ *globalOptions, cfg *config.Agent) (agent.Part, error) {
	if _, err := schedule.New(cfg.Scan.Schedule, "", nil); err != nil {
		return agent.Part{}, err
	}
	return agent.Part{Name: "scheduled scans", Run: runScheduledScans}, nil
}

func runScheduledScans(ctx context.Context, rt *agent.Runtime) error {
	cfg := *rt.Config
	cfg.NodeName = rt.Node
	log := rt.Logger.With("part", "scan")
	sched, err := schedule.New(cfg.Scan.Schedule, rt.Node, nil)
	if err != nil {
		return err
	}
	var pacer scan.Pacer
	if p := rt.Limits.Pacer(); p != nil { // limits without a cgroup
		pacer = p
	}
	sc, err := scan.FromAgent(&cfg, scan.ClamdEngine(rt.Clamd), rt.Reporter, log, pacer)
	if err != nil {
		return err
	}
	defer sc.Close()
	r := &schedule.Runner{
		Schedule: sched,
		State:    schedule.FileState{Path: filepath.Join(cfg.StateDir, scheduleStateFile)},
		Logger:   log,
		Job: func(ctx context.Context, trigger string) error {
			opts := scan.Options{Trigger: trigger, Paths: cfg.Scan.Paths, Containers: cfg.Scan.Containers}
			if rt.Updater != nil {
				opts.DBVersions = rt.Updater.Status().Installed
			}
			vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ver, verr := rt.Clamd.Version(vctx)
			cancel()
			key, versions, loaded, err := scan.DefinitionsKey(rt.DBDir, ver.Raw)
			switch {
			case verr != nil || err != nil:
				log.Warn("incremental scan off: the loaded definitions are not known", "err", errors.Join(verr, err))
			case !loaded || (len(opts.DBVersions) > 0 && !maps.Equal(opts.DBVersions, versions)):
				// The set on disk is not the one clamd was confirmed to run
				// (an update in progress): remember nothing under its key.
				log.Info("incremental scan off for this scan: definitions update in progress", "installed", versions, "confirmed", opts.DBVersions)
			default:
				opts.Definitions = key
			}
			if len(opts.DBVersions) == 0 {
				opts.DBVersions = versions
			}
			_, err = sc.Run(ctx, opts)
			if errors.Is(err, scan.ErrBusy) {
				return schedule.ErrBusy
			}
			return err
		},
	}
	return r.Run(ctx)
}
