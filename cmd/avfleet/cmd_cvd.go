package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/avfleet/avfleet/internal/cvd"
)

func init() { register(newCVDCommand) }

func newCVDCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "cvd",
		Short: "Inspect, verify, patch and build ClamAV database files",
		Long: `Inspect, verify, patch and build ClamAV database files (.cvd, .cld, .cud, .cdiff)
with the same verifier the mirror and the agents use.

Exit codes: see each subcommand.`,
		Example: `  avfleet cvd verify daily.cvd main.cvd
  avfleet cvd patch daily.cvd daily-27001.cdiff daily-27002.cdiff -o daily.cld
  avfleet cvd build --key acme.key --name acme --version 3 -o acme.cvd acme.hdb acme.ldb`,
	}
	c.AddCommand(newCVDInfoCommand(g), newCVDVerifyCommand(g), newCVDPatchCommand(g), newCVDBuildCommand(g))
	return c
}

// trustOptions are the verification flags shared by info, verify and patch.
type trustOptions struct {
	keys          []string
	certsDir      string
	requireSign   bool
	allowUnsigned bool
}

func (o *trustOptions) addFlags(c *cobra.Command) {
	c.Flags().StringArrayVar(&o.keys, "key", nil, "extra trusted public key (PEM) beside ClamAV's built-in keys; repeatable")
	c.Flags().StringVar(&o.certsDir, "certs-dir", "", "CA certificates for ClamAV 1.5 .sign files (without it .sign files are not checked)")
	c.Flags().BoolVar(&o.requireSign, "require-sign", false, "reject files without a valid .sign beside them (needs --certs-dir)")
	c.Flags().BoolVar(&o.allowUnsigned, "allow-unsigned", false, "accept unsigned databases (.cud)")
}

// trust builds a cvd.Trust from the flags; errors are usage or I/O errors.
func (o *trustOptions) trust() (*cvd.Trust, error) {
	t := &cvd.Trust{AllowUnsigned: o.allowUnsigned, RequireSign: o.requireSign}
	for _, p := range o.keys {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, usagef("--key %s: %v", p, errors.Unwrap(err))
		}
		k, err := cvd.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, usagef("--key %s: %v", p, err)
		}
		t.Keys = append(t.Keys, k)
	}
	if o.requireSign && o.certsDir == "" {
		return nil, usagef("--require-sign needs --certs-dir (the CA certificates that sign .sign files)")
	}
	if o.certsDir != "" {
		roots, err := cvd.LoadSignRoots(o.certsDir)
		if err != nil {
			return nil, usagef("--certs-dir: %v", err)
		}
		t.SignRoots = roots
	}
	return t, nil
}

// verifyExit maps a verification error to an exit code: I/O problems stop
// the operation (2), everything else is the file being refused (1).
func verifyExit(err error) int {
	var ve *cvd.VerifyError
	if errors.As(err, &ve) && ve.Check != cvd.CheckIO {
		return exitFailure
	}
	return exitError
}

// summary is the one-line description of a verified file.
func summary(i *cvd.Info) string {
	if i.Kind == cvd.KindCDiff {
		s := fmt.Sprintf("cdiff %s -> version %d, signed by %s", i.Name, i.CDiffVersion, i.SignedBy)
		return s + signSuffix(i)
	}
	s := fmt.Sprintf("%s %s version %d (%d sigs, f-level %d, built %s), signed by %s",
		i.Kind, i.Name, i.Header.Version, i.Header.Sigs, i.Header.FLevel,
		i.Header.Time.Format("2006-01-02 15:04 MST"), i.SignedBy)
	return s + signSuffix(i)
}

func signSuffix(i *cvd.Info) string {
	if i.Sign == "" {
		return ""
	}
	if i.SignFile != "" {
		return fmt.Sprintf(", .sign %s (%s)", i.Sign, filepath.Base(i.SignFile))
	}
	return ", .sign " + i.Sign
}

// ---- cvd info ----

func newCVDInfoCommand(g *globalOptions) *cobra.Command {
	var o trustOptions
	var asJSON bool
	c := &cobra.Command{
		Use:   "info FILE [--json]",
		Short: "Show a database's header, its files with size and SHA-256, and its signature status",
		Long: `Show what a .cvd/.cld/.cud/.cdiff says about itself: header fields, the files it
contains with size and SHA-256, and whether it verifies (with ClamAV's built-in keys
and any --key given).

Exit codes: 0 shown (also when the signature status is "invalid"), 2 unreadable,
not a ClamAV database, or a corrupt or unsafe archive, or a usage error.`,
		Example: `  avfleet cvd info /var/lib/clamav/daily.cld
  avfleet cvd info --json test.cvd | jq .files`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.trust()
			if err != nil {
				return err
			}
			return runCVDInfo(cmd.OutOrStdout(), args[0], t, asJSON)
		},
	}
	o.addFlags(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

type infoJSON struct {
	*cvd.Info
	Status string `json:"status"`           // valid | invalid
	Check  string `json:"check,omitempty"`  // when invalid
	Reason string `json:"reason,omitempty"` // when invalid
}

func runCVDInfo(w io.Writer, path string, t *cvd.Trust, asJSON bool) error {
	info, err := cvd.Inspect(path, t.Limits)
	if err != nil {
		return withCode(exitError, err)
	}
	out := infoJSON{Info: info, Status: "valid"}
	if v, verr := cvd.Verify(path, t); verr != nil {
		var ve *cvd.VerifyError
		if !errors.As(verr, &ve) {
			return withCode(exitError, verr)
		}
		out.Status, out.Check, out.Reason = "invalid", string(ve.Check), ve.Reason
	} else {
		out.Info = v
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	i := out.Info
	fmt.Fprintf(w, "%s: ClamAV %s %q\n", path, i.Kind, i.Name)
	if i.Kind == cvd.KindCDiff {
		fmt.Fprintf(w, "  produces version  %d\n", i.CDiffVersion)
	} else {
		h := i.Header
		fmt.Fprintf(w, "  version           %d\n", h.Version)
		fmt.Fprintf(w, "  build time        %s (%s)\n", h.BuildTime, h.Time.Format(time.RFC3339))
		fmt.Fprintf(w, "  signatures        %d\n", h.Sigs)
		fmt.Fprintf(w, "  f-level           %d\n", h.FLevel)
		fmt.Fprintf(w, "  builder           %s\n", h.Builder)
		fmt.Fprintf(w, "  body MD5          %s\n", h.MD5)
	}
	fmt.Fprintf(w, "  size              %d bytes\n", i.Size)
	fmt.Fprintf(w, "  sha256            %s\n", i.SHA256)
	if out.Status == "valid" {
		fmt.Fprintf(w, "  status            valid, signed by %s\n", i.SignedBy)
		fmt.Fprintf(w, "  .sign             %s\n", strings.TrimPrefix(signSuffix(i), ", .sign "))
	} else {
		fmt.Fprintf(w, "  status            INVALID: %s: %s\n", out.Check, out.Reason)
	}
	if len(i.Files) > 0 {
		fmt.Fprintf(w, "  files:\n")
		width := 0
		for _, f := range i.Files {
			width = max(width, len(f.Name))
		}
		for _, f := range i.Files {
			fmt.Fprintf(w, "    %-*s %10d  %s\n", width, f.Name, f.Size, f.SHA256)
		}
	}
	return nil
}

// ---- cvd verify ----

func newCVDVerifyCommand(g *globalOptions) *cobra.Command {
	var o trustOptions
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify FILE... [--key PEM]... [--certs-dir DIR] [--require-sign] [--allow-unsigned] [--json]",
		Short: "Fully verify .cvd/.cld/.cud/.cdiff files (and the .sign beside each)",
		Long: `Verify each file the way the mirror does before serving it and the agent before
installing it: header, body MD5, header signature, archive safety, .info DSIG, every
file's size and SHA-256, build time, and the ClamAV 1.5 .sign beside it when
--certs-dir is given (FILE.sign, or DB-VERSION.cvd.sign beside DB.cvd as ClamAV 1.5
mirrors name it). One line per file: "FILE: OK ..." or "FILE: FAIL CHECK: REASON".

Exit codes: 0 all valid, 1 any invalid, 2 usage or I/O error (a file could not be read).`,
		Example: `  avfleet cvd verify /var/lib/clamav/*.c[lv]d
  avfleet cvd verify --key acme.pub.pem acme.cvd
  avfleet cvd verify --certs-dir /etc/clamav/certs --require-sign daily.cvd`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.trust()
			if err != nil {
				return err
			}
			return runCVDVerify(cmd.OutOrStdout(), args, t, asJSON)
		},
	}
	o.addFlags(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

type verifyResultJSON struct {
	Path   string    `json:"path"`
	Valid  bool      `json:"valid"`
	Check  string    `json:"check,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Info   *cvd.Info `json:"info,omitempty"`
}

type verifyJSON struct {
	Files    []verifyResultJSON `json:"files"`
	AllValid bool               `json:"all_valid"`
}

func runCVDVerify(w io.Writer, paths []string, t *cvd.Trust, asJSON bool) error {
	code := exitOK
	doc := verifyJSON{AllValid: true}
	for _, p := range paths {
		info, err := cvd.Verify(p, t)
		r := verifyResultJSON{Path: p, Valid: err == nil, Info: info}
		if err != nil {
			doc.AllValid = false
			code = max(code, verifyExit(err))
			var ve *cvd.VerifyError
			if errors.As(err, &ve) {
				r.Check, r.Reason = string(ve.Check), ve.Reason
			} else {
				r.Check, r.Reason = string(cvd.CheckIO), err.Error()
			}
			if !asJSON {
				fmt.Fprintf(w, "%s: FAIL %s: %s\n", p, r.Check, r.Reason)
			}
		} else if !asJSON {
			fmt.Fprintf(w, "%s: OK %s\n", p, summary(info))
		}
		doc.Files = append(doc.Files, r)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	}
	if code != exitOK {
		return withCode(code, nil)
	}
	return nil
}

// ---- cvd patch ----

func newCVDPatchCommand(g *globalOptions) *cobra.Command {
	var o trustOptions
	var out string
	c := &cobra.Command{
		Use:   "patch BASE CDIFF... -o OUT.cld",
		Short: "Apply a cdiff chain to a .cvd/.cld and write the verified result as a .cld",
		Long: `Verify BASE and every CDIFF (each must produce the previous version + 1), apply them
in order, verify the result like any other database, and write it atomically as a CLD
in the form freshclam writes (clamd loads it; keep only one of NAME.cvd / NAME.cld in
clamd's database directory).

Exit codes: 0 written, 1 a file or the result failed verification (nothing written),
2 usage or I/O error.`,
		Example: `  avfleet cvd patch test-1.cvd test-2.cdiff test-3.cdiff -o test.cld`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("cvd patch: -o OUT.cld is required")
			}
			if filepath.Ext(out) != ".cld" {
				return usagef("cvd patch: -o %s: the output must be named NAME.cld (clamd decides how to load a database by its extension)", out)
			}
			t, err := o.trust()
			if err != nil {
				return err
			}
			info, err := cvd.Patch(args[0], args[1:], out, t)
			if err != nil {
				return withCode(verifyExit(err), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK %s (from %s + %d cdiffs)\n", out, summary(info), filepath.Base(args[0]), len(args)-1)
			return nil
		},
	}
	o.addFlags(c)
	c.Flags().StringVarP(&out, "output", "o", "", "output file NAME.cld (required)")
	return c
}

// ---- cvd build ----

func newCVDBuildCommand(g *globalOptions) *cobra.Command {
	var keyPath, name, builder, out string
	var version, flevel uint
	var unsigned bool
	c := &cobra.Command{
		Use:   "build --key PEM|--unsigned --name N --version V [--builder B] [--flevel F] -o OUT FILES...",
		Short: "Build a CVD signed with your organisation's key (or an unsigned CUD) from signature files",
		Long: `Build a database from signature files (.hdb .hsb .ndb .ldb .ign2 ...; stored under their
base names, a file named COPYING is included unlisted).

With --key PREFIX.key (from "avfleet keys generate") the result is a CVD whose header
signature and .info DSIG are both made with that key: "avfleet cvd verify --key
PREFIX.pub.pem" and a mirror or agent with that key in trust.cvd_keys accept it, nothing
else does. clamd itself only trusts ClamAV's key in a CVD, so the agent installs such a
database as a CUD. With --unsigned the result is a CUD that clamd loads directly
(detections carry ClamAV's ".UNOFFICIAL" suffix) and avfleet accepts only with
allow-unsigned. OUT must be named NAME.cvd (signed) or NAME.cud (unsigned).

Exit codes: 0 written, 2 usage or I/O error.`,
		Example: `  avfleet keys generate -o /etc/avfleet/acme
  avfleet cvd build --key /etc/avfleet/acme.key --name acme --version 3 -o acme.cvd acme.hdb acme.ndb
  avfleet cvd build --unsigned --name local --version 1 -o local.cud local.hdb`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case keyPath == "" && !unsigned:
				return usagef("cvd build: give --key PEM (signed CVD) or --unsigned (CUD)")
			case keyPath != "" && unsigned:
				return usagef("cvd build: --key and --unsigned exclude each other")
			case out == "":
				return usagef("cvd build: -o OUT is required")
			case name == "":
				return usagef("cvd build: --name is required")
			case version == 0:
				return usagef("cvd build: --version must be at least 1")
			}
			want := ".cvd"
			if unsigned {
				want = ".cud"
			}
			if filepath.Ext(out) != want {
				return usagef("cvd build: -o %s: a %s database must be named NAME%s (clamd decides how to load it by its extension)",
					out, map[bool]string{true: "unsigned", false: "signed"}[unsigned], want)
			}
			opts := cvd.BuildOptions{Name: name, Version: version, FLevel: flevel, Builder: builder, Files: args}
			if keyPath != "" {
				b, err := os.ReadFile(keyPath)
				if err != nil {
					return usagef("--key %s: %v", keyPath, errors.Unwrap(err))
				}
				if opts.Key, err = cvd.ParsePrivateKeyPEM(b); err != nil {
					return usagef("--key %s: %v", keyPath, err)
				}
			}
			if err := buildAtomic(out, opts); err != nil {
				return withCode(exitError, fmt.Errorf("cvd build %s: %w", out, err))
			}
			who := "unsigned"
			if opts.Key != nil {
				who = "signed by key:" + cvd.Fingerprint(&opts.Key.PublicKey)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: built %s version %d, %s\n", out, name, version, who)
			return nil
		},
	}
	c.Flags().StringVar(&keyPath, "key", "", "private key (PEM) to sign with, from avfleet keys generate")
	c.Flags().BoolVar(&unsigned, "unsigned", false, "build an unsigned CUD instead of a signed CVD")
	c.Flags().StringVar(&name, "name", "", "database name (required), e.g. acme")
	c.Flags().UintVar(&version, "version", 0, "database version (required, at least 1)")
	c.Flags().StringVar(&builder, "builder", "", "builder name in the header (default "+cvd.DefaultBuilder+")")
	c.Flags().UintVar(&flevel, "flevel", 0, fmt.Sprintf("minimum ClamAV f-level (default %d)", cvd.DefaultFLevel))
	c.Flags().StringVarP(&out, "output", "o", "", "output file (required)")
	return c
}

// buildAtomic builds into a temp file beside out and renames it into place.
func buildAtomic(out string, o cvd.BuildOptions) error {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := cvd.Build(f, o); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
