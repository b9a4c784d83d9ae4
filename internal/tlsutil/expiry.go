package tlsutil

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// ExpiryWarning is how long before a certificate ends the daemons start
// warning about it: enough to renew by hand, and to roll a new CA out to a
// fleet (see the operator guide, "Rotating certificates").
const ExpiryWarning = 30 * 24 * time.Hour

// ReadCertificates reads every CERTIFICATE block of a PEM file (a CA file
// may hold two while a CA is being replaced).
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCertificates(path, b)
}

func parseCertificates(path string, b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return out, nil
}

// FirstToExpire is the certificate of certs that ends first (nil for none):
// the date something stops working.
func FirstToExpire(certs []*x509.Certificate) *x509.Certificate {
	var first *x509.Certificate
	for _, c := range certs {
		if c != nil && (first == nil || c.NotAfter.Before(first.NotAfter)) {
			first = c
		}
	}
	return first
}

// WarnExpiry logs a warning for every certificate of certs that has expired
// at now or ends within ExpiryWarning of it. which names its role in the
// configuration ("tls.cert", "tls.client_ca", "mirror.cert", ...), file
// where it is. It returns how many it warned about.
func WarnExpiry(log *slog.Logger, now time.Time, which, file string, certs ...*x509.Certificate) int {
	n := 0
	for _, c := range certs {
		if c == nil {
			continue
		}
		attrs := []any{"cert", which, "file", file, "subject", c.Subject.String(),
			"not_after", c.NotAfter.UTC().Format(time.RFC3339)}
		switch left := c.NotAfter.Sub(now); {
		case left <= 0:
			log.Warn("TLS certificate has expired: peers refuse it; renew it", attrs...)
		case left <= ExpiryWarning:
			log.Warn("TLS certificate expires within 30 days: renew it", append(attrs, "days_left", int(left.Hours()/24))...)
		default:
			continue
		}
		n++
	}
	return n
}
