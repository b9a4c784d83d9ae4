package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/tlsutil"
)

func init() { register(newCertsCommand) }

// certsOptions are the flags of `certs init` and `certs issue`.
type certsOptions struct {
	dir     string
	hosts   []string
	clients []string
	days    int
	force   bool
	keyType string
	server  bool
}

func (o *certsOptions) addCommon(c *cobra.Command) {
	c.Flags().StringVar(&o.dir, "dir", "", "certificate directory (required)")
	c.Flags().IntVar(&o.days, "days", tlsutil.DefaultDays, "validity of the server and client certificates in days (the CA gets 10 years)")
	c.Flags().StringVar(&o.keyType, "key-type", string(tlsutil.ECDSAP256), "key algorithm: ecdsa (P-256) or rsa (3072 bits)")
	c.Flags().BoolVar(&o.force, "force", false, "replace existing files")
}

func (o *certsOptions) check(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", c.CommandPath(), args)
	}
	if o.dir == "" {
		return usagef("%s: --dir is required", c.CommandPath())
	}
	if o.days < 1 {
		return usagef("--days %d: must be at least 1", o.days)
	}
	switch tlsutil.KeyType(o.keyType) {
	case tlsutil.ECDSAP256, tlsutil.RSA3072:
	default:
		return usagef("--key-type %q: want ecdsa or rsa", o.keyType)
	}
	return nil
}

func (o *certsOptions) tlsOptions() tlsutil.Options {
	return tlsutil.Options{Hosts: o.hosts, Days: o.days, KeyType: tlsutil.KeyType(o.keyType), Overwrite: o.force}
}

func newCertsCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "certs",
		Short: "Create the fleet's certificate authority and node certificates for mutual TLS",
		Long: `Create and extend the small certificate authority that secures the link between
the mirror and its agents: the mirror accepts only clients with a certificate from
this CA, and a node's identity is its certificate's common name (CN), which must
equal the agent's node_name.

Exit codes: 0 written, 2 usage error, I/O error or a file that would be replaced without --force.`,
		Example: `  avfleet certs init --dir /etc/avfleet/pki --host mirror.internal --host 10.0.0.5 --client web-1
  avfleet certs issue --dir /etc/avfleet/pki --client web-2`,
	}
	c.AddCommand(newCertsInitCommand(g), newCertsIssueCommand(g))
	return c
}

func newCertsInitCommand(g *globalOptions) *cobra.Command {
	o := &certsOptions{}
	c := &cobra.Command{
		Use:   "init --dir D [--host H]... [--client NAME]... [--days N]",
		Short: "Create a CA, the mirror's server certificate and client certificates",
		Long: `Create a new certificate authority in --dir and write

  ca.crt ca.key          the CA (keep ca.key offline or at least off the nodes)
  server.crt server.key  the mirror's certificate; its names (SANs) are the --host
                         values, or localhost, 127.0.0.1 and ::1 when none is given
  NAME.crt NAME.key      one client certificate per --client, CN = NAME

Keys are written with mode 0600, every file atomically. init refuses to replace an
existing CA, because every certificate it issued would stop working; --force does.

Exit codes: 0 written, 2 usage error, I/O error or existing files without --force.`,
		Example: `  avfleet certs init --dir ./pki
  avfleet certs init --dir /etc/avfleet/pki --host mirror.internal --host 10.0.0.5 \
      --client web-1 --client web-2 --days 365`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(cmd, args); err != nil {
				return err
			}
			if err := tlsutil.InitWith(o.dir, o.clients, o.tlsOptions()); err != nil {
				return certsError(err)
			}
			files := []string{tlsutil.CACertFile, tlsutil.CAKeyFile, tlsutil.ServerCertFile, tlsutil.ServerKeyFile}
			for _, n := range o.clients {
				files = append(files, n+".crt", n+".key")
			}
			printWritten(cmd.OutOrStdout(), o.dir, files)
			g.logger.Debug("certificate authority created", "dir", o.dir, "hosts", o.hosts, "clients", o.clients)
			return nil
		},
	}
	o.addCommon(c)
	c.Flags().StringArrayVar(&o.hosts, "host", nil, "a name of the mirror's server certificate: DNS name or IP address (repeatable)")
	c.Flags().StringArrayVar(&o.clients, "client", nil, "a node name to issue a client certificate for (repeatable)")
	return c
}

func newCertsIssueCommand(g *globalOptions) *cobra.Command {
	o := &certsOptions{}
	var client string
	c := &cobra.Command{
		Use:   "issue --dir D --client NAME [--days N] | --dir D --server [--host H]...",
		Short: "Add a client certificate (or renew the server's) from an existing CA",
		Long: `Sign a new certificate with the CA in --dir (ca.crt and ca.key):

  --client NAME   writes NAME.crt and NAME.key, CN = NAME, for client authentication only
  --server        writes a new server.crt and server.key for the --host names (renewal;
                  send the mirror SIGHUP to load it without a restart); needs --force
                  when they exist

An existing certificate of the same name is replaced only with --force.

Exit codes: 0 written, 2 usage error, I/O error, no CA in --dir, or existing files without --force.`,
		Example: `  avfleet certs issue --dir /etc/avfleet/pki --client web-3
  avfleet certs issue --dir /etc/avfleet/pki --client web-3 --days 90 --force
  avfleet certs issue --dir /etc/avfleet/pki --server --host mirror.internal --force`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(cmd, args); err != nil {
				return err
			}
			var files []string
			switch {
			case o.server && client != "":
				return usagef("certs issue: give --client NAME or --server, not both")
			case o.server:
				if err := tlsutil.IssueServer(o.dir, o.tlsOptions()); err != nil {
					return certsError(err)
				}
				files = []string{tlsutil.ServerCertFile, tlsutil.ServerKeyFile}
			case client != "":
				if len(o.hosts) > 0 {
					return usagef("certs issue: --host is for --server; a client certificate's name is --client")
				}
				if err := tlsutil.IssueWith(o.dir, client, o.tlsOptions()); err != nil {
					return certsError(err)
				}
				files = []string{client + ".crt", client + ".key"}
			default:
				return usagef("certs issue: --client NAME (or --server) is required")
			}
			printWritten(cmd.OutOrStdout(), o.dir, files)
			g.logger.Debug("certificate issued", "dir", o.dir, "client", client, "server", o.server)
			return nil
		},
	}
	o.addCommon(c)
	c.Flags().StringVar(&client, "client", "", "node name: the certificate's CN and file name")
	c.Flags().BoolVar(&o.server, "server", false, "renew the server certificate instead of issuing a client one")
	c.Flags().StringArrayVar(&o.hosts, "host", nil, "with --server: a DNS name or IP address of the mirror (repeatable)")
	return c
}

// certsError adds what to do to the one error an operator can fix by
// choice rather than by repair.
func certsError(err error) error {
	if errors.Is(err, tlsutil.ErrExists) {
		return withCode(exitError, fmt.Errorf("%w (use --force to replace it)", err))
	}
	return withCode(exitError, err)
}

func printWritten(w io.Writer, dir string, files []string) {
	for _, f := range files {
		fmt.Fprintf(w, "wrote %s\n", filepath.Join(dir, f))
	}
}
