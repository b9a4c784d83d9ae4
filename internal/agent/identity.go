package agent

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"
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
