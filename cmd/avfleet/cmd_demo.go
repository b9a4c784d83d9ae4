package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/demo"
)

func init() { register(newDemoCommand) }

func newDemoCommand(g *globalOptions) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "demo [--keep]",
		Short: "Run a mirror, an agent with its clamd and scans on this machine, in a temp dir",
		Long: `The quick start. In a new temporary directory, avfleet demo:

  1. makes a fleet CA and certificates for mutual TLS (certs init)
  2. makes an organisation signing key and a small database signed with it: hash
     signatures for EICAR and clam.exe, one body signature (keys generate, cvd build)
  3. runs the mirror on a free loopback port and imports the database (mirror serve,
     mirror import)
  4. runs the agent with a managed clamd, which fetches, re-verifies and installs it
     (agent run)
  5. writes sample files: a clean one, EICAR (made at run time), EICAR in a zip and in a
     tar.gz, clam.exe when clamav-testfiles is installed, a text with the body pattern
  6. scans them through the agent's clamd (scan)
  7. shows the node as the mirror sees it (mirror status, node report)
  8. publishes version 2 of the database, shows the agent installing it within a second,
     and scans again: what only version 2 detects is now found

Each step says what happens and where its files are; the mirror and agent log to files
in the directory (in the --log-level and --log-format given). Everything is stopped and the directory removed at the end or on
Ctrl-C; --keep keeps it and prints the commands to run the mirror and agent again and
look around. Needs clamd (` + demo.InstallHint + `);
'make demo' installs it and builds avfleet first. Runs as any user; takes a few seconds.

Exit codes: 0 the demo ran and every result was as expected, 1 a result was not (a
bug: please report the output), 2 clamd is not installed, the demo was interrupted, or
an error stopped it.`,
		Example: `  avfleet demo
  avfleet demo --keep
  make demo        # as root on Debian/Ubuntu: installs the clamav packages, builds, runs it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), g, cmd.OutOrStdout(), demo.Options{Keep: keep})
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep the directory and print how to run and inspect the demo fleet")
	return c
}

// runDemo runs the demo with the global log level for the daemons' log
// files and maps its outcome to an exit code.
func runDemo(ctx context.Context, g *globalOptions, out io.Writer, o demo.Options) error {
	o.Out = out
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err == nil {
		o.LogLevel = level
	}
	o.LogJSON = g.logFormat == "json"
	_, err := demo.Run(ctx, o)
	var unexpected *demo.UnexpectedError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, demo.ErrNoClamd):
		return withCode(exitError, fmt.Errorf("demo: %w\nInstall ClamAV's packages first (as root): %s\n(or run 'make demo', which does that and builds avfleet)", err, demo.InstallHint))
	case errors.As(err, &unexpected):
		return withCode(exitFailure, fmt.Errorf("demo: %w", err))
	}
	return withCode(exitError, fmt.Errorf("demo: %w", err))
}
