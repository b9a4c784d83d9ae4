package tlsutil

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWarnExpiry: certificates issued here with chosen validities; only the
// expired one and the one ending within 30 days are warned about.
func TestWarnExpiry(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []struct {
		name string
		o    Options
		want string // "" = no warning
	}{
		{"fine", Options{Days: 90}, ""},
		{"soon", Options{Days: 10}, "TLS certificate expires within 30 days: renew it"},
		{"edge", Options{Days: 31, Now: now.Add(-60 * time.Hour)}, "days_left=28"}, // 28.5 days left
		{"expired", Options{Days: 2, Now: now.AddDate(0, 0, -3)}, "TLS certificate has expired: peers refuse it; renew it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := IssueWith(dir, c.name, c.o); err != nil {
				t.Fatal(err)
			}
			certs, err := ReadCertificates(filepath.Join(dir, c.name+".crt"))
			if err != nil || len(certs) != 1 {
				t.Fatalf("%d certificates, %v", len(certs), err)
			}
			var buf bytes.Buffer
			n := WarnExpiry(slog.New(slog.NewTextHandler(&buf, nil)), now, "mirror.cert", "node.crt", certs...)
			out := buf.String()
			if c.want == "" {
				if n != 0 || out != "" {
					t.Fatalf("warned %d: %s", n, out)
				}
				return
			}
			if n != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, c.want) ||
				!strings.Contains(out, "cert=mirror.cert file=node.crt") || !strings.Contains(out, "CN="+c.name) {
				t.Fatalf("warned %d: %s", n, out)
			}
		})
	}
}

// TestClientCAsAndFirstToExpire: a CA file with two CAs (a rotation) is read
// whole; the one ending first is the one that matters.
func TestClientCAsAndFirstToExpire(t *testing.T) {
	oldDir, newDir := t.TempDir(), t.TempDir()
	for _, d := range []string{oldDir, newDir} {
		if err := Init(d, nil, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The old CA was made a year ago: it ends a year before the new one.
	if err := InitWith(oldDir, nil, Options{Overwrite: true, Now: time.Now().AddDate(-1, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(oldDir, CACertFile))
	b, _ := os.ReadFile(filepath.Join(newDir, CACertFile))
	bundle := filepath.Join(t.TempDir(), "bundle.crt")
	if err := os.WriteFile(bundle, append(b, a...), 0o644); err != nil {
		t.Fatal(err)
	}
	certs, err := ReadCertificates(bundle)
	if err != nil || len(certs) != 2 {
		t.Fatalf("%d certificates, %v", len(certs), err)
	}
	oldCA := readCert(t, filepath.Join(oldDir, CACertFile))
	if f := FirstToExpire(certs); f == nil || !f.NotAfter.Equal(oldCA.NotAfter) {
		t.Fatalf("first to expire %v, want the old CA's %v", f, oldCA.NotAfter)
	}
	if FirstToExpire(nil) != nil {
		t.Error("FirstToExpire(nil) is not nil")
	}
	_, r, err := ServerConfig(filepath.Join(newDir, ServerCertFile), filepath.Join(newDir, ServerKeyFile), bundle)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.ClientCAs(); len(got) != 2 || r.Certificate() == nil {
		t.Fatalf("reloader: %d client CAs, server certificate %v", len(got), r.Certificate())
	}
	_, r, err = ServerConfig(filepath.Join(newDir, ServerCertFile), filepath.Join(newDir, ServerKeyFile), "")
	if err != nil || len(r.ClientCAs()) != 0 {
		t.Fatalf("without client_ca: %v, %d CAs", err, len(r.ClientCAs()))
	}
	if _, err := ReadCertificates(filepath.Join(newDir, ServerKeyFile)); err == nil {
		t.Error("a key file read as certificates")
	}
}
