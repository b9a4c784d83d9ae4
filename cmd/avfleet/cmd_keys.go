package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/cvd"
)

func init() { register(newKeysCommand) }

func newKeysCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Manage the RSA keys that sign your organisation's databases",
		Long: `Manage the RSA keys that sign your organisation's own ClamAV databases (cvd build).

Exit codes: see each subcommand.`,
		Example: `  avfleet keys generate -o /etc/avfleet/acme`,
	}
	c.AddCommand(newKeysGenerateCommand(g))
	return c
}

func newKeysGenerateCommand(g *globalOptions) *cobra.Command {
	var prefix string
	var force bool
	c := &cobra.Command{
		Use:   "generate -o PREFIX",
		Short: "Generate an RSA key pair for cvd build (PREFIX.key, PREFIX.pub.pem)",
		Long: fmt.Sprintf(`Generate a %d-bit RSA key pair: PREFIX.key (private, PKCS#8 PEM, mode 0600: keep it
where databases are built, never on the nodes) and PREFIX.pub.pem (public, PKIX PEM: put
it in the mirror's and agents' trust.cvd_keys). %d bits is what fits ClamAV's 512-byte
database header. Existing files are not replaced unless --force is given.

Exit codes: 0 written, 2 usage or I/O error, or a file exists.`, cvd.KeyBits, cvd.KeyBits),
		Example: `  avfleet keys generate -o /etc/avfleet/acme
  avfleet cvd build --key /etc/avfleet/acme.key --name acme --version 1 -o acme.cvd acme.hdb`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prefix == "" {
				return usagef("keys generate: -o PREFIX is required")
			}
			key, err := cvd.WriteKeyPair(prefix, force)
			if err != nil {
				return withCode(exitError, fmt.Errorf("keys generate: %w", err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.key (private, keep it secret) and %s.pub.pem\nfingerprint key:%s\n",
				prefix, prefix, cvd.Fingerprint(&key.PublicKey))
			return nil
		},
	}
	c.Flags().StringVarP(&prefix, "output", "o", "", "output prefix (required): writes PREFIX.key and PREFIX.pub.pem")
	c.Flags().BoolVar(&force, "force", false, "replace existing key files")
	return c
}
