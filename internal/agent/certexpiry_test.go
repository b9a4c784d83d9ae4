package agent

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// TestCertExpiryAtStart: a node certificate that ends within 30 days is
// warned about when the agent is set up (and by WarnCertExpiry, which
// `agent run --check-config` calls), and both certificates' end dates are
// exported; a fresh certificate gets no warning.
func TestCertExpiryAtStart(t *testing.T) {
	for _, c := range []struct {
		name string
		days int
		warn bool
	}{
		{"ends in 10 days", 10, true},
		{"ends in 90 days", 90, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			certs := pki(t)
			if err := tlsutil.IssueWith(certs, "node1", tlsutil.Options{Days: c.days}); err != nil {
				t.Fatal(err)
			}
			cfg := config.DefaultAgent()
			cfg.NodeName = "node1"
			cfg.StateDir = t.TempDir()
			cfg.Mirror.URLs = []string{"https://127.0.0.1:1"}
			cfg.Mirror.CA = filepath.Join(certs, "ca.crt")
			cfg.Mirror.Cert = filepath.Join(certs, "node1.crt")
			cfg.Mirror.Key = filepath.Join(certs, "node1.key")
			cfg.Clamd.Mode, cfg.Clamd.Socket = "external", "unix://"+filepath.Join(cfg.StateDir, "none.sock")
			cfg.Report.MetricsListen = ""
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			reg := prometheus.NewRegistry()
			a, err := New(Options{Config: &cfg, Logger: log, Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			const msg = "TLS certificate expires within 30 days: renew it"
			if got := strings.Contains(logs.String(), msg) && strings.Contains(logs.String(), "cert=mirror.cert"); got != c.warn {
				t.Errorf("warned %v, want %v:\n%s", got, c.warn, logs.String())
			}
			client, ca := mustFirst(t, cfg.Mirror.Cert), mustFirst(t, cfg.Mirror.CA)
			if got := metric(t, reg, "avfleet_agent_tls_certificate_expiry_timestamp_seconds", "cert=client"); got != float64(client.NotAfter.Unix()) {
				t.Errorf("client expiry metric %v, want %v", got, client.NotAfter.Unix())
			}
			if got := metric(t, reg, "avfleet_agent_tls_certificate_expiry_timestamp_seconds", "cert=ca"); got != float64(ca.NotAfter.Unix()) {
				t.Errorf("ca expiry metric %v, want %v", got, ca.NotAfter.Unix())
			}
			// The daily repeat and --check-config: the same verdict.
			logs.Reset()
			WarnCertExpiry(log, cfg.Mirror, time.Now())
			if got := strings.Contains(logs.String(), msg); got != c.warn {
				t.Errorf("WarnCertExpiry warned %v, want %v:\n%s", got, c.warn, logs.String())
			}
		})
	}
}

func mustFirst(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := tlsutil.ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	return tlsutil.FirstToExpire(certs)
}
