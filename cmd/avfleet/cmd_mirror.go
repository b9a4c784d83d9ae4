package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/mirror/upstream"
	"github.com/avfleet/avfleet/internal/mirror/upstream/mirrorsink"
)

func init() { register(newMirrorCommand) }

const defaultMirrorConfig = "/etc/avfleet/mirror.yaml"

// mirrorOptions are the flags every mirror subcommand shares.
type mirrorOptions struct {
	config string
	json   bool
}

func (o *mirrorOptions) addConfig(c *cobra.Command) {
	c.Flags().StringVar(&o.config, "config", defaultMirrorConfig, "mirror configuration file")
}

// load reads mirror.yaml; a bad file is exit 2.
func (o *mirrorOptions) load() (*config.Mirror, error) {
	cfg, err := config.LoadMirror(o.config)
	if err != nil {
		return nil, withCode(exitError, err)
	}
	return cfg, nil
}

// openStore opens the data directory for the one-shot commands. Run by
// root on a data directory that belongs to another user (the daemon's), the
// command first reads what only root may (configuration, trust keys, and
// through prepare the files to import), then takes that user's identity, so
// that nothing it creates in the store is root's.
func (o *mirrorOptions) openStore(g *globalOptions, prepare func()) (*mirror.Store, error) {
	cfg, err := o.load()
	if err != nil {
		return nil, err
	}
	v, err := mirror.NewVerifier(cfg.Trust)
	if err != nil {
		return nil, withCode(exitError, err)
	}
	if prepare != nil {
		prepare()
	}
	uid, fixed, err := mirror.RunAsDataDirOwner(cfg.DataDir)
	if err != nil {
		return nil, withCode(exitError, err)
	}
	if fixed > 0 {
		g.logger.Info("gave files left by earlier root runs back to the owner of data_dir", "data_dir", cfg.DataDir, "uid", uid, "files", fixed)
	}
	if uid >= 0 {
		g.logger.Debug("running as the owner of data_dir", "data_dir", cfg.DataDir, "uid", uid)
	}
	st, err := mirror.Open(mirror.Options{DataDir: cfg.DataDir, Retention: cfg.Retention, Verifier: v, Logger: g.logger})
	if err != nil {
		return nil, withCode(exitError, err)
	}
	return st, nil
}

func newMirrorCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "mirror",
		Short: "Verify ClamAV definitions and serve them to the fleet over mutual TLS",
		Long: `The mirror verifies every database file it receives (upstream sync or air-gapped
import) with the same verifier the agents run, keeps the verified versions, and serves
them to freshclam and avfleet agents over mutual TLS.

Data directory layout: incoming/ (waiting), verified (the set served), history/<db>/<version>/,
rejected/ (with .reason files), state.db. Commands that change it (import, hold, release,
rollback) work while the daemon runs; the daemon serves their result within a second.
Run by root on a data directory that belongs to another user (the daemon's user),
import, hold, release, rollback and status read the configuration, keys and files to
import as root, then work as that user: everything they create belongs to it.

Exit codes: see each subcommand.`,
		Example: `  avfleet mirror serve --config /etc/avfleet/mirror.yaml
  avfleet mirror import --config /etc/avfleet/mirror.yaml /media/usb/daily-27480.cvd
  avfleet mirror status --config /etc/avfleet/mirror.yaml`,
	}
	c.AddCommand(newMirrorServeCommand(g), newMirrorImportCommand(g), newMirrorStatusCommand(g),
		newMirrorRollbackCommand(g), newMirrorHoldCommand(g), newMirrorReleaseCommand(g))
	return c
}

func newMirrorServeCommand(g *globalOptions) *cobra.Command {
	o := &mirrorOptions{}
	var checkConfig bool
	c := &cobra.Command{
		Use:   "serve --config F [--check-config]",
		Short: "Run the mirror daemon",
		Long: `Run the mirror daemon: HTTPS with client certificates on listen, optional plain HTTP
on plain_listen, /metrics /healthz /readyz on admin_listen. Files dropped into
incoming/ are verified within a second. SIGHUP reloads the TLS certificate, key and
client CA; SIGTERM or SIGINT stops it gracefully.

--check-config validates the configuration (including that the TLS files and trust
keys load), prints the effective configuration and exits. Both warn about a server
certificate or client CA that has expired or ends within 30 days (serve again daily
and after SIGHUP).

Exit codes: 0 stopped by SIGTERM/SIGINT (or --check-config passed), 2 configuration,
listen or data directory error.`,
		Example: `  avfleet mirror serve --config /etc/avfleet/mirror.yaml
  avfleet mirror serve --config mirror.yaml --check-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load()
			if err != nil {
				return err
			}
			if checkConfig {
				return runMirrorCheckConfig(cmd.OutOrStdout(), g.logger, cfg)
			}
			return runMirrorServe(cmd.Context(), g, cfg)
		},
	}
	o.addConfig(c)
	c.Flags().BoolVar(&checkConfig, "check-config", false, "validate the configuration, print the effective configuration and exit")
	return c
}

func runMirrorCheckConfig(out io.Writer, log *slog.Logger, cfg *config.Mirror) error {
	if err := mirror.CheckTLS(cfg, log); err != nil {
		return withCode(exitError, fmt.Errorf("%s: %w", cfg.Path(), err))
	}
	if _, err := mirror.LoadTrust(cfg.Trust); err != nil {
		return withCode(exitError, fmt.Errorf("%s: %w", cfg.Path(), err))
	}
	b, err := cfg.Effective()
	if err != nil {
		return withCode(exitError, err)
	}
	_, err = out.Write(b)
	return err
}

func runMirrorServe(ctx context.Context, g *globalOptions, cfg *config.Mirror) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d, err := mirror.NewDaemon(mirror.DaemonOptions{Config: cfg, Logger: g.logger, Registerer: reg, Gatherer: reg})
	if err != nil {
		return withCode(exitError, err)
	}
	if cfg.Upstream.Enabled {
		sink, state := mirrorsink.New(d.Store())
		s, err := upstream.New(upstream.Options{Config: cfg.Upstream, Sink: sink, State: state, Logger: g.logger, Registerer: reg})
		if err != nil {
			return withCode(exitError, err)
		}
		d.Go(s.Run)
	}
	defer onSIGHUP(ctx, func() {
		if err := d.ReloadTLS(); err != nil {
			g.logger.Error("SIGHUP: TLS reload failed, keeping the old certificates", "err", err)
		}
	})()
	if err := d.Run(ctx); err != nil {
		return withCode(exitError, err)
	}
	return nil
}

func newMirrorImportCommand(g *globalOptions) *cobra.Command {
	o := &mirrorOptions{}
	c := &cobra.Command{
		Use:   "import --config F FILE...",
		Short: "Verify database files now and add them to the mirror (air-gapped update)",
		Long: `Copy each FILE atomically into incoming/ and run the verifier on it now, in version
order (cdiffs before the full database of the same version), printing what happened to
each: accepted (served from now on, unless the database is held), ignored (that version
is already verified) or rejected (moved to rejected/ with a .reason file; the check that
failed is shown and counted in status and metrics). A FILE.sign (or the
{db}-{version}.cvd.sign beside a {db}.cvd) travels with its file. Works while the
daemon runs.

Exit codes: 0 every file accepted or ignored, 1 any file rejected, 2 usage,
configuration or I/O error.`,
		Example: `  avfleet mirror import --config /etc/avfleet/mirror.yaml /media/usb/*.cvd /media/usb/*.cdiff
  avfleet mirror import --config mirror.yaml --json daily-27480.cvd`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("mirror import: give at least one FILE")
			}
			var srcs []*mirror.Source
			defer func() { mirror.CloseSources(srcs) }()
			st, err := o.openStore(g, func() { srcs = mirror.OpenSources(args) })
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.ImportSources(cmd.Context(), srcs)
			printImport(cmd.OutOrStdout(), res, o.json)
			if err != nil {
				return withCode(exitError, err)
			}
			for _, r := range res {
				if r.Outcome == mirror.Rejected {
					return withCode(exitFailure, nil)
				}
			}
			return nil
		},
	}
	o.addConfig(c)
	c.Flags().BoolVar(&o.json, "json", false, "print one JSON document")
	return c
}

func printImport(w io.Writer, res []mirror.Result, asJSON bool) {
	if asJSON {
		if res == nil {
			res = []mirror.Result{}
		}
		b, _ := json.MarshalIndent(map[string]any{"results": res}, "", "  ")
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	for _, r := range res {
		switch r.Outcome {
		case mirror.Accepted:
			fmt.Fprintf(w, "accepted  %s: %s version %d (%s)\n", r.File, r.Database, r.Version, r.Kind)
		case mirror.Ignored:
			fmt.Fprintf(w, "ignored   %s: %s\n", r.File, r.Reason)
		default:
			where := ""
			if r.StoredAs != "" {
				where = " [" + r.StoredAs + "]"
			}
			fmt.Fprintf(w, "rejected  %s: check %s: %s%s\n", r.File, r.Check, r.Reason, where)
		}
	}
}

func newMirrorStatusCommand(g *globalOptions) *cobra.Command {
	o := &mirrorOptions{}
	c := &cobra.Command{
		Use:   "status --config F [--json]",
		Short: "Show what the mirror serves, holds and rejected, and how current the nodes are",
		Long: `Show per database: the version served, its build time and age, signature count, kind
(cvd, cld, cud), the newest full CVD, the cdiff range served, the newest verified
version, whether it is held or rolled back, the last upstream sync result and any
cool-down, and recent rejections with the check that failed. Then the files waiting in
incoming/, rejection totals by check, and how many nodes report and run the served
versions. Reads only; works while the daemon runs.

Exit codes: 0 shown, 2 configuration or I/O error.`,
		Example: `  avfleet mirror status --config /etc/avfleet/mirror.yaml
  avfleet mirror status --config mirror.yaml --json | jq '.databases[] | {name, version, held}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.openStore(g, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			s, err := st.Status()
			if err != nil {
				return withCode(exitError, err)
			}
			if o.json {
				b, err := json.MarshalIndent(s, "", "  ")
				if err != nil {
					return withCode(exitError, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return nil
			}
			printStatus(cmd.OutOrStdout(), s, time.Now())
			return nil
		},
	}
	o.addConfig(c)
	c.Flags().BoolVar(&o.json, "json", false, "print one JSON document")
	return c
}

func printStatus(w io.Writer, s mirror.Status, now time.Time) {
	fmt.Fprintf(w, "data_dir %s\n", s.DataDir)
	if s.PublishedAt == nil {
		synced := false
		for _, d := range s.Databases {
			synced = synced || d.LastSync != nil
		}
		if synced {
			fmt.Fprintf(w, "nothing verified yet: upstream sync has not brought a database yet (LAST SYNC below says why)\n")
		} else {
			fmt.Fprintf(w, "nothing verified yet: import a database (avfleet mirror import) or enable upstream sync\n")
		}
	} else {
		fmt.Fprintf(w, "serving generation %d (published %s, etag %s)\n", s.Generation, s.PublishedAt.Format(time.RFC3339), s.ETag)
	}
	if len(s.Databases) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DATABASE\tVERSION\tBUILD TIME (UTC)\tAGE\tSIGS\tKIND\tFULL CVD\tCDIFFS\tNEWEST\tSTATE\tLAST SYNC\tCOOL-DOWN")
		for _, d := range s.Databases {
			build, age := "-", "-"
			if !d.BuildTime.IsZero() {
				build = d.BuildTime.UTC().Format("2006-01-02 15:04")
				age = shortDuration(time.Duration(d.AgeSeconds) * time.Second)
			}
			cd := "-"
			if d.CDiffs != nil {
				cd = fmt.Sprintf("%d-%d", d.CDiffs.From, d.CDiffs.To)
			}
			state := "serving newest"
			switch {
			case d.Version == 0 && d.LatestVersion == 0:
				state = "nothing verified"
			case d.Version == 0:
				state = "not served"
			case d.Held:
				state = "HELD"
			case d.RolledBack:
				state = "ROLLED BACK"
			case d.LatestVersion > d.Version:
				state = "newer pending"
			}
			sync := "-"
			if d.LastSync != nil {
				sync = d.LastSync.Result + " " + d.LastSync.CheckedAt.Format("01-02 15:04")
				if d.LastSync.Error != "" {
					sync += ": " + d.LastSync.Error
				}
			}
			cool := "-"
			if d.Cooldown != nil {
				cool = "until " + d.Cooldown.Until.Format(time.RFC3339)
			}
			full := "-"
			if d.FullVersion > 0 {
				full = strconv.FormatUint(uint64(d.FullVersion), 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, versionOrDash(d.Version), build, age, d.Sigs, orDash(d.Kind),
				full, cd, versionOrDash(d.LatestVersion), state, sync, cool)
		}
		tw.Flush()
	}
	for _, c := range s.Cooldowns {
		fmt.Fprintf(w, "cool-down %s until %s: %s\n", c.Scope, c.Until.Format(time.RFC3339), c.Reason)
	}
	if len(s.Pending) > 0 {
		fmt.Fprintf(w, "\nwaiting in incoming/: %s\n", strings.Join(s.Pending, " "))
	}
	if len(s.Rejections) > 0 {
		fmt.Fprintf(w, "\nrecent rejections:\n")
		for _, r := range s.Rejections {
			fmt.Fprintf(w, "  %s  %-10s  %-16s  %s\n", r.Time.Format("2006-01-02 15:04:05"), orDash(r.Database), r.Check, r.Reason)
		}
		var parts []string
		for check, n := range s.Rejected {
			parts = append(parts, fmt.Sprintf("%s %d", check, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "rejections by check since the start: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "\nnodes: %d total, %d reporting (24 h), %d current\n", s.Nodes.Total, s.Nodes.Reporting, s.Nodes.Current)
}

func versionOrDash(v uint) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatUint(uint64(v), 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "future"
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// pinError maps a hold/release/rollback error to its exit code: the
// operation saying no (unknown database or version) is 1, the rest 2.
func pinError(err error) error {
	if errors.Is(err, mirror.ErrUnknownDatabase) || errors.Is(err, mirror.ErrNoSuchVersion) {
		return withCode(exitFailure, err)
	}
	return withCode(exitError, err)
}

func newMirrorRollbackCommand(g *globalOptions) *cobra.Command {
	o := &mirrorOptions{}
	c := &cobra.Command{
		Use:   "rollback --config F DB VERSION",
		Short: "Serve an older verified version of a database to every client",
		Long: `Pin DB at VERSION, a version still in history/ (see status: the retention.versions
newest are kept). The file is verified again first. The manifest, the files and
/dns.txt show VERSION to every client: agents install it; freshclam keeps what it has
(it never downgrades) and gets 304 until the pin is released. New versions are still
verified and kept meanwhile; 'release' serves the newest again.

Exit codes: 0 rolled back, 1 unknown database or version not available, 2 usage,
configuration or I/O error.`,
		Example: `  avfleet mirror rollback --config /etc/avfleet/mirror.yaml daily 27479`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("mirror rollback: want DB VERSION, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.ParseUint(args[1], 10, 32)
			if err != nil || v == 0 {
				return usagef("mirror rollback: VERSION %q is not a positive number", args[1])
			}
			st, err := o.openStore(g, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			p, err := st.Rollback(cmd.Context(), args[0], uint(v))
			if err != nil {
				return pinError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s rolled back to version %d\n", p.Database, p.Version)
			return nil
		},
	}
	o.addConfig(c)
	return c
}

func newMirrorHoldCommand(g *globalOptions) *cobra.Command {
	o := &mirrorOptions{}
	c := &cobra.Command{
		Use:   "hold --config F DB",
		Short: "Freeze a database at the version served now",
		Long: `Keep serving DB at its current version. Newer versions are still verified and kept,
but no client sees them until 'release'. Holding a rolled-back database keeps it at the
rolled-back version.

Exit codes: 0 held, 1 unknown database, 2 usage, configuration or I/O error.`,
		Example: `  avfleet mirror hold --config /etc/avfleet/mirror.yaml daily`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("mirror hold: want DB, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := o.openStore(g, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			p, err := st.Hold(cmd.Context(), args[0])
			if err != nil {
				return pinError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s held at version %d\n", p.Database, p.Version)
			return nil
		},
	}
	o.addConfig(c)
	return c
}

func newMirrorReleaseCommand(g *globalOptions) *cobra.Command {
	o := &mirrorOptions{}
	c := &cobra.Command{
		Use:   "release --config F DB",
		Short: "Undo hold or rollback: serve the newest verified version again",
		Long: `Remove the hold or rollback of DB; every client sees the newest verified version again.

Exit codes: 0 released (or was not pinned), 1 unknown database, 2 usage, configuration
or I/O error.`,
		Example: `  avfleet mirror release --config /etc/avfleet/mirror.yaml daily`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("mirror release: want DB, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := o.openStore(g, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			had, err := st.Release(cmd.Context(), args[0])
			if err != nil {
				return pinError(err)
			}
			if had {
				fmt.Fprintf(cmd.OutOrStdout(), "%s released: serving the newest verified version\n", args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s was not held or rolled back\n", args[0])
			}
			return nil
		},
	}
	o.addConfig(c)
	return c
}
