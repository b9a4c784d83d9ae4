package cvd

// Placeholders so that packages built on cvd compile while the verifier is
// written. Every one of them is replaced by the real implementation; none is
// ever a success.

import (
	"crypto/rsa"
	"errors"
	"io"
	"time"
)

var errNotImplemented = errors.New("cvd: not implemented yet")

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
