package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func certsReadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertsInitAndIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	code, out, errOut := runCLI(t, "certs", "init", "--dir", dir, "--host", "mirror.internal", "--host", "10.0.0.5",
		"--client", "web-1", "--client", "db-1", "--days", "90")
	if code != 0 {
		t.Fatalf("init: exit %d, stderr %q", code, errOut)
	}
	for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "web-1.crt", "web-1.key", "db-1.crt", "db-1.key"} {
		if !strings.Contains(out, "wrote "+filepath.Join(dir, f)+"\n") {
			t.Errorf("output does not list %s:\n%s", f, out)
		}
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f, ".key") {
			want = 0o600
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), want)
		}
	}

	srv := certsReadCert(t, filepath.Join(dir, "server.crt"))
	if !slices.Equal(srv.DNSNames, []string{"mirror.internal"}) || len(srv.IPAddresses) != 1 || srv.IPAddresses[0].String() != "10.0.0.5" {
		t.Errorf("server SANs: DNS %v IP %v", srv.DNSNames, srv.IPAddresses)
	}
	if d := srv.NotAfter.Sub(srv.NotBefore); d < 90*24*time.Hour || d > 91*24*time.Hour {
		t.Errorf("--days 90 gave %v", d)
	}
	ca := certsReadCert(t, filepath.Join(dir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	web := certsReadCert(t, filepath.Join(dir, "web-1.crt"))
	if web.Subject.CommonName != "web-1" {
		t.Errorf("client CN %q", web.Subject.CommonName)
	}
	if _, err := web.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify: %v", err)
	}

	// A second init must not replace the CA.
	caKey, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	code, _, errOut = runCLI(t, "certs", "init", "--dir", dir)
	if code != 2 || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "--force") {
		t.Errorf("second init: exit %d, stderr %q", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.key")); string(b) != string(caKey) {
		t.Fatal("second init replaced ca.key")
	}

	code, out, errOut = runCLI(t, "certs", "issue", "--dir", dir, "--client", "late-1", "--days", "7")
	if code != 0 {
		t.Fatalf("issue: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, filepath.Join(dir, "late-1.key")) {
		t.Errorf("issue output %q", out)
	}
	late := certsReadCert(t, filepath.Join(dir, "late-1.crt"))
	if late.Subject.CommonName != "late-1" || !slices.Equal(late.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("issued: CN %q EKU %v", late.Subject.CommonName, late.ExtKeyUsage)
	}
	if _, err := late.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not chain to the CA: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "late-1.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("issued key mode %v", st.Mode().Perm())
	}
	if code, _, _ = runCLI(t, "certs", "issue", "--dir", dir, "--client", "late-1"); code != 2 {
		t.Errorf("issue over an existing certificate without --force: exit %d", code)
	}
	if code, _, errOut = runCLI(t, "certs", "issue", "--dir", dir, "--client", "late-1", "--force"); code != 0 {
		t.Errorf("issue --force: exit %d %s", code, errOut)
	}

	code, _, errOut = runCLI(t, "certs", "issue", "--dir", dir, "--server", "--host", "mirror2.internal", "--force")
	if code != 0 {
		t.Fatalf("issue --server: exit %d %s", code, errOut)
	}
	if s := certsReadCert(t, filepath.Join(dir, "server.crt")); !slices.Equal(s.DNSNames, []string{"mirror2.internal"}) {
		t.Errorf("renewed server SANs %v", s.DNSNames)
	}
}

func TestCertsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"init without dir", []string{"certs", "init"}, "--dir is required"},
		{"init bad host", []string{"certs", "init", "--dir", dir, "--host", "a b"}, `host "a b"`},
		{"init bad client", []string{"certs", "init", "--dir", dir, "--client", "../x"}, `client name "../x"`},
		{"init bad days", []string{"certs", "init", "--dir", dir, "--days", "0"}, "--days 0"},
		{"init bad key type", []string{"certs", "init", "--dir", dir, "--key-type", "dsa"}, `--key-type "dsa"`},
		{"init extra argument", []string{"certs", "init", "--dir", dir, "extra"}, "takes no arguments"},
		{"unknown flag", []string{"certs", "init", "--dir", dir, "--hots", "x"}, "unknown flag"},
		{"issue without client", []string{"certs", "issue", "--dir", dir}, "--client NAME"},
		{"issue without CA", []string{"certs", "issue", "--dir", dir, "--client", "n"}, "ca.crt"},
		{"issue client and server", []string{"certs", "issue", "--dir", dir, "--client", "n", "--server"}, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, errOut, tc.want)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed commands wrote files: %v", ents)
	}
}

func TestCertsHelp(t *testing.T) {
	for _, args := range [][]string{{"certs", "--help"}, {"certs", "init", "--help"}, {"certs", "issue", "--help"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "Examples:") {
			t.Errorf("%v: exit %d, help lacks exit codes or examples:\n%s", args, code, out)
		}
	}
}
