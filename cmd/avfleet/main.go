// Command avfleet keeps a fleet of Linux VMs and container hosts protected by
// ClamAV: a definitions mirror, a node agent, and the operator commands around
// them. main.go owns signals, logging setup and exit codes; each command lives
// in its own cmd_<name>.go and hands the work to a package under internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, in one place. Commands document which they use in their help.
const (
	exitOK      = 0 // success; for scan: nothing found
	exitFailure = 1 // the operation ran and said no: invalid file, infected file, rejected import
	exitError   = 2 // usage error, I/O error, or anything that stopped the operation itself
)

// exitCodeError carries an exit code up to main without printing twice.
type exitCodeError struct {
	code int
	err  error // nil: the command already printed what the operator needs
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitCodeError) Unwrap() error { return e.err }

// withCode wraps err so main exits with code. A nil err means "already reported".
func withCode(code int, err error) error { return &exitCodeError{code: code, err: err} }

// usageError marks an error in how the command was called (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ce *exitCodeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit code; tests call it directly.
func run(ctx context.Context, args []string) int {
	g := &globalOptions{stdout: os.Stdout, stderr: os.Stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ce *exitCodeError
		if !errors.As(err, &ce) || ce.err != nil {
			fmt.Fprintf(g.stderr, "avfleet: %v\n", err)
		}
	}
	return exitCode(err)
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "avfleet",
		Short: "Keep a fleet of Linux VMs and container hosts protected by ClamAV",
		Long: `avfleet keeps every node of a fleet on current, verified ClamAV definitions,
scans it on schedule through clamd, and reports what it finds.

  mirror   verifies definitions (online or air-gapped) and serves them over mutual TLS
  agent    keeps clamd on each node updated, scans on schedule, reports to the mirror
  cvd      inspects, verifies, patches and builds ClamAV database files

Exit codes: 0 success, 1 the operation said no (invalid file, infection found,
rejected import), 2 usage or I/O error.`,
		Example: `  avfleet demo                                   # the whole thing on this machine, in a temp dir
  avfleet mirror serve --config /etc/avfleet/mirror.yaml
  avfleet agent run --config /etc/avfleet/agent.yaml
  avfleet scan /srv`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup(cmd)
		},
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	g.addFlags(root)
	root.AddCommand(
		newVersionCommand(g),
	)
	for _, c := range registeredCommands {
		root.AddCommand(c(g))
	}
	return root
}

// registeredCommands lets each cmd_<name>.go add itself from an init function,
// so commands can be built in parallel without editing this file.
var registeredCommands []func(*globalOptions) *cobra.Command

func register(c func(*globalOptions) *cobra.Command) {
	registeredCommands = append(registeredCommands, c)
}

// globalOptions are the flags every command takes, and what main builds from
// them: one logger, passed down, never a global.
type globalOptions struct {
	logLevel  string
	logFormat string
	stdout    *os.File
	stderr    *os.File
	logger    *slog.Logger
}

func (g *globalOptions) addFlags(c *cobra.Command) {
	c.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	c.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
}

func (g *globalOptions) setup(*cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		g.logger = slog.New(slog.NewTextHandler(g.stderr, opts))
	case "json":
		g.logger = slog.New(slog.NewJSONHandler(g.stderr, opts))
	default:
		return usagef("--log-format %q: want text or json", g.logFormat)
	}
	return nil
}
