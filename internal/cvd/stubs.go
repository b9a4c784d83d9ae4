package cvd

// Placeholders so that packages built on cvd compile while the verifier is
// written. Every one of them is replaced by the real implementation; none is
// ever a success.

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"time"
)

var errNotImplemented = errors.New("cvd: not implemented yet")

// ParseHeader parses a 512-byte .cvd/.cld/.cud header.
func ParseHeader(b []byte) (Header, error) { return Header{}, errNotImplemented }

// Verify verifies the database or cdiff at path (kind decided by content) and
// the .sign file beside it, under t. A cdiff is verified on its own (signature
// and script syntax); use Patch to check it applies.
func Verify(path string, t *Trust) (*Info, error) { return nil, errNotImplemented }

// Patch verifies base, applies the cdiffs in order (each must be the previous
// version + 1), verifies the result and writes it to out as a CLD, atomically
// (temp file in out's directory, fsync, rename). It returns the result's Info.
func Patch(base string, cdiffs []string, out string, t *Trust) (*Info, error) {
	return nil, errNotImplemented
}

// BuildOptions describe a database built from signature files.
type BuildOptions struct {
	Name    string          // database name, e.g. "acme"
	Version uint            // database version
	FLevel  uint            // minimum f-level; 0 = a sensible default
	Builder string          // builder name in the header
	Time    time.Time       // build time; zero = now
	Key     *rsa.PrivateKey // nil = unsigned CUD
	Files   []string        // signature files (.hdb .hsb .ndb .ldb .ign2 ...), stored under their base names
}

// Build writes a CVD signed with o.Key (or a CUD when o.Key is nil) to w.
func Build(w io.Writer, o BuildOptions) error { return errNotImplemented }

// Convert rewrites the verified database src as dst in the given kind (CUD or
// CLD) so clamd loads it: clamd only trusts ClamAV's key in CVD/CLD, so an
// organisation's database is installed as a CUD.
func Convert(src, dst string, to Kind) error { return errNotImplemented }

// ParsePublicKeyPEM parses an RSA public key (PKIX or PKCS#1 PEM).
func ParsePublicKeyPEM(b []byte) (*rsa.PublicKey, error) { return nil, errNotImplemented }

// LoadSignRoots reads every PEM certificate in dir into a pool for .sign checks.
func LoadSignRoots(dir string) (*x509.CertPool, error) { return nil, errNotImplemented }
