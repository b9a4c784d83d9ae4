package agent

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// CheckIdentity verifies that node equals the Common Name of the client
// certificate in certFile, and that the certificate is within its validity.
func CheckIdentity(node, certFile string, now time.Time) error {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("mirror.cert: %w", err)
	}
	var blk *pem.Block
	for rest := b; ; {
		if blk, rest = pem.Decode(rest); blk == nil || blk.Type == "CERTIFICATE" {
			break
		}
	}
	if blk == nil {
		return fmt.Errorf("mirror.cert: %s: no PEM CERTIFICATE block", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("mirror.cert: %s: %w", certFile, err)
	}
	if c.Subject.CommonName != node {
		return fmt.Errorf("node_name %q does not match the client certificate's CN %q (%s): the mirror identifies nodes by the CN and would refuse this node's reports; set node_name: %q in the agent config, or issue a certificate for this name with `avfleet certs issue --dir CA_DIR --client %s`",
			node, c.Subject.CommonName, certFile, c.Subject.CommonName, node)
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("mirror.cert: %s expired on %s: issue a new one with `avfleet certs issue --dir CA_DIR --client %s`", certFile, c.NotAfter.UTC().Format(time.DateOnly), node)
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("mirror.cert: %s is not valid before %s (check this node's clock)", certFile, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// WarnCertExpiry logs a warning for the client certificate (mirror.cert)
// and the CA the mirror must chain to (mirror.ca) when one has expired or
// ends within tlsutil.ExpiryWarning of now, and returns the certificate of
// each that ends first (nil when it is not set or does not load: the other
// checks say why).
func WarnCertExpiry(log *slog.Logger, m config.MirrorEndpoint, now time.Time) (client, ca *x509.Certificate) {
	for _, f := range []struct {
		which, file string
		first       **x509.Certificate
	}{{"mirror.cert", m.Cert, &client}, {"mirror.ca", m.CA, &ca}} {
		if f.file == "" {
			continue
		}
		certs, err := tlsutil.ReadCertificates(f.file)
		if err != nil {
			continue
		}
		if f.which == "mirror.cert" {
			certs = certs[:1] // the leaf; what follows it is its chain
		}
		tlsutil.WarnExpiry(log, now, f.which, f.file, certs...)
		*f.first = tlsutil.FirstToExpire(certs)
	}
	return client, ca
}
