package mirror

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
)

// TestOrganisationDatabases runs the real verifier: a CVD signed with an
// organisation's key is accepted only when trust.cvd_keys holds the key, an
// unsigned CUD only with trust.allow_unsigned, and with require_sign a file
// without a .sign is refused.
func TestOrganisationDatabases(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyFile := filepath.Join(dir, "acme.pub.pem")
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644))
	sigs := filepath.Join(dir, "acme.hdb")
	must(t, os.WriteFile(sigs, []byte("44d88612fea8a8f36de82e1278abb02f:68:Acme.Test.EICAR\n"), 0o644))
	build := func(name string, v uint, k *rsa.PrivateKey) string {
		var b bytes.Buffer
		if err := cvd.Build(&b, cvd.BuildOptions{Name: "acme", Version: v, Builder: "test", Time: time.Now().Add(-time.Hour), Key: k, Files: []string{sigs}}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), name)
		must(t, os.WriteFile(p, b.Bytes(), 0o644))
		return p
	}
	signed, unsigned := build("acme.cvd", 1, key), build("acme.cud", 1, nil)

	open := func(tr config.Trust) *Store {
		v, err := NewVerifier(tr)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{DataDir: t.TempDir(), Retention: retention(30, 5), Verifier: v})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	for _, c := range []struct {
		name  string
		trust config.Trust
		file  string
		want  Outcome
		check cvd.Check
		kind  string
	}{
		{"signed, key configured", config.Trust{CVDKeys: []string{keyFile}}, signed, Accepted, "", "cvd"},
		{"signed, key not configured", config.Trust{}, signed, Rejected, cvd.CheckSignature, ""},
		{"unsigned, not allowed", config.Trust{}, unsigned, Rejected, cvd.CheckUnsigned, ""},
		{"unsigned, allowed", config.Trust{AllowUnsigned: true}, unsigned, Accepted, "", "cud"},
		{"no .sign but required", config.Trust{CVDKeys: []string{keyFile}, SignCertsDir: dir, RequireSign: true}, signed, Rejected, cvd.CheckSign, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.trust.SignCertsDir != "" {
				// any PEM certificate makes a valid certs directory
				pki := newPKI(t)
				copyFile(t, filepath.Join(dir, "ca.crt"), filepath.Join(pki, "ca.crt"))
			}
			s := open(c.trust)
			res, err := s.Import(context.Background(), []string{c.file})
			if err != nil {
				t.Fatal(err)
			}
			if r := res[0]; r.Outcome != c.want || r.Check != c.check {
				t.Fatalf("%s by %q (%s), want %s by %q", r.Outcome, r.Check, r.Reason, c.want, c.check)
			}
			if c.want != Accepted {
				return
			}
			man, _ := s.Manifest()
			d := man.Databases[0]
			if d.Name != "acme" || d.Kind != c.kind || d.Path != "/acme."+c.kind {
				t.Fatalf("manifest %+v", d)
			}
			if want := cvd.SignedByUnsigned; c.kind == "cud" && d.SignedBy != want || c.kind == "cvd" && d.SignedBy != "key:"+cvd.Fingerprint(&key.PublicKey) {
				t.Errorf("signed_by %q", d.SignedBy)
			}
		})
	}
}
