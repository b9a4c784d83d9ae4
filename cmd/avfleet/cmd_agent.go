package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/agent"
	"github.com/avfleet/avfleet/internal/agent/clamdproc"
	"github.com/avfleet/avfleet/internal/agent/updater"
	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

func init() { register(newAgentCommand) }

const defaultAgentConfig = "/etc/avfleet/agent.yaml"

// agentParts lets other cmd_*.go files add parts to the agent daemon (the
// scheduled scanner) from an init function, without editing this file.
var agentParts []func(g *globalOptions, cfg *config.Agent) (agent.Part, error)

func registerAgentPart(p func(g *globalOptions, cfg *config.Agent) (agent.Part, error)) {
	agentParts = append(agentParts, p)
}

func newAgentCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "agent",
		Short: "Keep this node's clamd on current, verified definitions",
		Long: `The agent keeps clamd on this node running on current definitions from the avfleet
mirror, re-verifying every file itself, scans on schedule, and reports to the mirror.

Exit codes: see each subcommand.`,
		Example: `  avfleet agent run --config /etc/avfleet/agent.yaml
  avfleet agent update --config /etc/avfleet/agent.yaml`,
	}
	c.AddCommand(newAgentRunCommand(g), newAgentUpdateCommand(g))
	return c
}

func loadAgentConfig(path string) (*config.Agent, error) {
	cfg, err := config.LoadAgent(path)
	if err != nil {
		return nil, withCode(exitError, err)
	}
	return cfg, nil
}

func newAgentRunCommand(g *globalOptions) *cobra.Command {
	var cfgPath string
	var checkConfig bool
	c := &cobra.Command{
		Use:   "run --config F [--check-config]",
		Short: "Run the node agent daemon",
		Long: `Run the node agent: limits (cgroup) first, then the definitions (installed before
clamd starts, since clamd refuses an empty database directory; while the mirror is
unreachable and nothing is installed yet the agent keeps retrying and says so), then
clamd (managed child or external socket), then updates (checks_per_day polls plus an
instant update on every change the mirror announces), reports to the mirror and
metrics on report.metrics_listen. SIGTERM or SIGINT stops it and its clamd. SIGHUP
re-reads the configuration: the allowlist is applied at once (a new set, clamd
reloaded); other settings need a restart.

node_name (default: the host name) must equal the CN of mirror.cert: the mirror
knows the node by that name.

--check-config validates the configuration (including that node_name matches the
certificate and the TLS files and trust keys load), prints the effective
configuration and exits. An expired mirror.cert is an error; one that ends within
30 days (or a mirror.ca that has expired or will) is a warning, at start too and
daily while the agent runs.

Exit codes: 0 stopped by SIGTERM/SIGINT (or --check-config passed), 2 configuration
error or a failure the agent cannot recover from.`,
		Example: `  avfleet agent run --config /etc/avfleet/agent.yaml
  avfleet agent run --config agent.yaml --check-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadAgentConfig(cfgPath)
			if err != nil {
				return err
			}
			if checkConfig {
				return runAgentCheckConfig(cmd.OutOrStdout(), g.logger, cfg)
			}
			return runAgent(cmd.Context(), g, cfg)
		},
	}
	c.Flags().StringVar(&cfgPath, "config", defaultAgentConfig, "agent configuration file")
	c.Flags().BoolVar(&checkConfig, "check-config", false, "validate the configuration, print the effective configuration and exit")
	return c
}

func runAgentCheckConfig(out io.Writer, log *slog.Logger, cfg *config.Agent) error {
	fail := func(err error) error { return withCode(exitError, fmt.Errorf("%s: %w", cfg.Path(), err)) }
	if err := agent.CheckIdentity(cfg.NodeName, cfg.Mirror.Cert, time.Now()); err != nil {
		return fail(err)
	}
	agent.WarnCertExpiry(log, cfg.Mirror, time.Now())
	if _, err := tlsutil.ClientConfig(cfg.Mirror.CA, cfg.Mirror.Cert, cfg.Mirror.Key); err != nil {
		return fail(fmt.Errorf("mirror: %w", err))
	}
	if _, err := updater.TrustFromConfig(cfg.Trust); err != nil {
		return fail(err)
	}
	if cfg.Clamd.Mode == "managed" {
		if _, err := clamdproc.LookPath(cfg.Clamd.Binary); err != nil {
			return fail(fmt.Errorf("clamd.binary: %w", err))
		}
	}
	b, err := cfg.Effective()
	if err != nil {
		return withCode(exitError, err)
	}
	_, err = out.Write(b)
	return err
}

func runAgent(ctx context.Context, g *globalOptions, cfg *config.Agent) error {
	var parts []agent.Part
	for _, p := range agentParts {
		part, err := p(g, cfg)
		if err != nil {
			return withCode(exitError, err)
		}
		parts = append(parts, part)
	}
	a, err := agent.New(agent.Options{Config: cfg, Logger: g.logger, Parts: parts})
	if err != nil {
		return withCode(exitError, fmt.Errorf("%s: %w", cfg.Path(), err))
	}
	// SIGHUP re-reads the configuration (the allowlist applies at once).
	defer onSIGHUP(ctx, func() {
		nc, err := config.LoadAgent(cfg.Path())
		if err == nil {
			err = a.Reconfigure(nc)
		}
		if err != nil {
			g.logger.Error("SIGHUP: configuration not reloaded, keeping the running one", "err", err)
		}
	})()
	if err := a.Run(ctx); err != nil {
		return withCode(exitError, err)
	}
	return nil
}

func newAgentUpdateCommand(g *globalOptions) *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "update --config F",
		Short: "Run one definitions update now and print old -> new versions",
		Long: `Run one update cycle now, as the daemon does: read the mirror's manifest, download the
cdiffs (or the full database when needed), verify them under this node's trust settings,
install the new set atomically and ask clamd to reload. Works beside a running agent
(the two never install at the same time). clamd is reached at its socket (managed:
STATE_DIR/clamd.sock); the reload is confirmed by clamd answering again and, when a
database named daily is installed, by VERSION naming the new daily version. When no
clamd answers, the set is installed for clamd's next start, and the agent checks it
then: if clamd cannot load it, the previous set is put back.

Prints one line per database: NAME OLD -> NEW (how), or NAME VERSION (current).

Exit codes: 0 updated or already current, 1 the update failed (the previous definitions
stay installed; the reason is printed), 2 usage or configuration error.`,
		Example: `  avfleet agent update --config /etc/avfleet/agent.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadAgentConfig(cfgPath)
			if err != nil {
				return err
			}
			return runAgentUpdate(cmd.Context(), cmd.OutOrStdout(), g.logger, cfg)
		},
	}
	c.Flags().StringVar(&cfgPath, "config", defaultAgentConfig, "agent configuration file")
	return c
}

func runAgentUpdate(ctx context.Context, out io.Writer, log *slog.Logger, cfg *config.Agent) error {
	cfgErr := func(err error) error { return withCode(exitError, fmt.Errorf("%s: %w", cfg.Path(), err)) }
	if err := agent.CheckIdentity(cfg.NodeName, cfg.Mirror.Cert, time.Now()); err != nil {
		// Downloads work under any CN; only reports need it to match.
		log.Warn("node identity", "err", err)
	}
	tlsConf, err := tlsutil.ClientConfig(cfg.Mirror.CA, cfg.Mirror.Cert, cfg.Mirror.Key)
	if err != nil {
		return cfgErr(fmt.Errorf("mirror: %w", err))
	}
	var clients []*updater.Client
	for _, u := range cfg.Mirror.URLs {
		c, err := updater.NewClient(u, tlsConf, cfg.Mirror.Timeout.D())
		if err != nil {
			return cfgErr(err)
		}
		clients = append(clients, c)
	}
	trust, err := updater.TrustFromConfig(cfg.Trust)
	if err != nil {
		return cfgErr(err)
	}
	store, err := updater.OpenStore(cfg.StateDir)
	if err != nil {
		return cfgErr(err)
	}
	sock := cfg.Clamd.Socket
	if cfg.Clamd.Mode == "managed" {
		sock = "unix://" + filepath.Join(cfg.StateDir, clamdproc.SocketName)
	}
	var reloader updater.Reloader = updater.NoReload{}
	note := ""
	if cli, err := clamd.NewClient(sock); err == nil {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		perr := cli.Ping(pctx)
		cancel()
		if perr == nil {
			reloader = updater.SocketReloader{Client: cli}
		} else {
			note = fmt.Sprintf("clamd at %s does not answer (%v): installed for its next start", sock, perr)
		}
	}
	u, err := updater.New(updater.Options{
		Clients: clients, Store: store, Verifier: updater.CVDVerifier{Trust: trust}, Reloader: reloader,
		Allowlist:    updater.Allowlist{Signatures: cfg.Allowlist.Signatures, SHA256: cfg.Allowlist.SHA256},
		FetchSign:    cfg.Trust.SignCertsDir != "",
		ChecksPerDay: cfg.Mirror.ChecksPerDay, StaleAfter: cfg.Report.StaleAfter.D(), Logger: log,
	})
	if err != nil {
		return cfgErr(err)
	}
	res, err := u.Cycle(ctx)
	if err != nil {
		fmt.Fprintf(out, "update failed: %v\n", err)
		if res != nil {
			fmt.Fprintf(out, "installed (unchanged): %s\n", updater.FormatVersions(res.Old))
		}
		return withCode(exitFailure, nil)
	}
	printUpdate(out, res)
	if note != "" && res.Updated {
		fmt.Fprintln(out, note)
	}
	return nil
}

// printUpdate writes one line per database: old -> new (how), or current.
func printUpdate(w io.Writer, res *updater.Result) {
	if res == nil {
		return
	}
	names := map[string]bool{}
	for n := range res.Old {
		names[n] = true
	}
	for n := range res.New {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, n := range sorted {
		o, hadOld := res.Old[n]
		nv := res.New[n]
		switch {
		case !hadOld:
			fmt.Fprintf(w, "%s: none -> %d (%s)\n", n, nv, res.Methods[n])
		case o != nv:
			fmt.Fprintf(w, "%s: %d -> %d (%s)\n", n, o, nv, res.Methods[n])
		default:
			fmt.Fprintf(w, "%s: %d (current)\n", n, nv)
		}
	}
	if res.Updated && res.Bytes > 0 {
		fmt.Fprintf(w, "downloaded %d bytes from %s\n", res.Bytes, strings.TrimSuffix(res.Source, "/"))
	}
}
