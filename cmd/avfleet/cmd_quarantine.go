package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/agent/quarantine"
	"github.com/avfleet/avfleet/internal/config"
)

func init() { register(newQuarantineCommand) }

func newQuarantineCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "quarantine",
		Short: "List and restore files a scan action copied or moved away",
		Long: `Files that scan.action copy or move took are kept in scan.quarantine_dir (0700,
each file 0400 and never executable) with a metadata file: original path, container,
owner, mode, size, SHA-256, signature and time.

Exit codes: see each subcommand.`,
		Example: `  avfleet quarantine list
  avfleet quarantine restore 20250102T030405Z-1a2b3c4d`,
	}
	c.AddCommand(newQuarantineListCommand(g), newQuarantineRestoreCommand(g))
	return c
}

func quarantineStore(path string) (*quarantine.Store, error) {
	cfg, err := config.LoadAgent(path)
	if err != nil {
		return nil, withCode(exitError, err)
	}
	if _, err := os.Stat(cfg.Scan.QuarantineDir); errors.Is(err, os.ErrNotExist) {
		return nil, nil // nothing was ever quarantined
	}
	q, err := quarantine.OpenExisting(cfg.Scan.QuarantineDir)
	if err != nil {
		return nil, withCode(exitError, err)
	}
	return q, nil
}

func newQuarantineListCommand(g *globalOptions) *cobra.Command {
	var cfgPath string
	var jsonOut bool
	c := &cobra.Command{
		Use:   "list [--config F] [--json]",
		Short: "List quarantined files",
		Long: `List the files in scan.quarantine_dir, oldest first. --json writes one JSON array of
the metadata records.

Exit codes: 0 listed (also when empty), 1 some metadata file could not be read (the
others are listed), 2 configuration or I/O error.`,
		Example: `  avfleet quarantine list --config /etc/avfleet/agent.yaml
  avfleet quarantine list --json | jq '.[] | select(.signature | startswith("Win."))'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := quarantineStore(cfgPath)
			if err != nil {
				return err
			}
			var list []quarantine.Meta
			var listErr error
			if q != nil {
				list, listErr = q.List()
			}
			if jsonOut {
				if list == nil {
					list = []quarantine.Meta{}
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				enc.Encode(list)
			} else {
				w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tQUARANTINED\tSIGNATURE\tSIZE\tACTION\tPATH")
				for _, m := range list {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.Time.Local().Format("2006-01-02 15:04:05"),
						m.Signature, m.Size, m.Action, displayPath(m.Path, m.Container, m.ContainerPath))
				}
				w.Flush()
			}
			if listErr != nil {
				return withCode(exitFailure, listErr)
			}
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", scanDefaultConfig, "agent configuration (scan.quarantine_dir)")
	c.Flags().BoolVar(&jsonOut, "json", false, "write a JSON array")
	return c
}

func newQuarantineRestoreCommand(g *globalOptions) *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "restore ID [--config F]",
		Short: "Put a quarantined file back where it was",
		Long: `Write the quarantined file back to its original path (into the same container, while
it runs, for a file from a container), byte-identical (checked against the recorded
SHA-256), with its owner, mode (set-id bits included) and modification time, then
remove it from the quarantine. A file that has reappeared at the original path is
never overwritten, and directories on the way are not followed if they became
symlinks. The next scan finds the file again unless its signature or hash is in the
allowlist.

Exit codes: 0 restored, 1 refused (no such entry, a file exists at the path, the
directory or the container is gone, the quarantined copy is damaged), 2
configuration or I/O error.`,
		Example: `  avfleet quarantine restore 20250102T030405Z-1a2b3c4d --config /etc/avfleet/agent.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := quarantineStore(cfgPath)
			if err != nil {
				return err
			}
			if q == nil {
				return withCode(exitFailure, fmt.Errorf("restore %s: %w (the quarantine directory does not exist)", args[0], quarantine.ErrNotFound))
			}
			where, err := q.Restore(args[0])
			if err != nil {
				if errors.Is(err, quarantine.ErrNotFound) || errors.Is(err, quarantine.ErrExists) || errors.Is(err, quarantine.ErrGone) ||
					errors.Is(err, quarantine.ErrDamaged) || errors.Is(err, quarantine.ErrRefused) {
					return withCode(exitFailure, err)
				}
				return withCode(exitError, err)
			}
			fmt.Fprintf(os.Stdout, "%s: restored to %s\n", args[0], where)
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", scanDefaultConfig, "agent configuration (scan.quarantine_dir)")
	return c
}
