package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/version"
)

// supportedFLevel is the highest ClamAV functionality level avfleet's own
// verifier knows about; databases carry theirs in the header and avfleet
// records it, it does not refuse newer ones (clamd decides what it can load).
const supportedFLevel = 220

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print avfleet's version, the Go version and the supported f-level",
		Example: `  avfleet version`,
		Long:    "Print avfleet's version, the Go version it was built with and the highest ClamAV f-level it knows.\n\nExit codes: 0.",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "avfleet %s\ngo %s %s/%s\nf-level %d\n",
				version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, supportedFLevel)
			return nil
		},
	}
}
