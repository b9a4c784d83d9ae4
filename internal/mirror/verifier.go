package mirror

import (
	"crypto/rsa"
	"fmt"
	"os"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
)

// Verifier is the part of internal/cvd the pipeline uses. The daemon and the
// CLI use NewVerifier (the real one); unit tests substitute a fake.
type Verifier interface {
	// Verify checks one file (and the .sign beside it, path+".sign").
	Verify(path string) (*cvd.Info, error)
	// Patch applies cdiffs to base, verifies the result and writes it to out.
	Patch(base string, cdiffs []string, out string) (*cvd.Info, error)
}

type cvdVerifier struct{ trust *cvd.Trust }

func (v cvdVerifier) Verify(path string) (*cvd.Info, error) { return cvd.Verify(path, v.trust) }
func (v cvdVerifier) Patch(base string, cdiffs []string, out string) (*cvd.Info, error) {
	return cvd.Patch(base, cdiffs, out, v.trust)
}

// NewVerifier builds the verifier from the trust section of mirror.yaml:
// organisation keys, the .sign certificate directory, and what is allowed.
func NewVerifier(t config.Trust) (Verifier, error) {
	trust, err := LoadTrust(t)
	if err != nil {
		return nil, err
	}
	return cvdVerifier{trust: trust}, nil
}

// LoadTrust reads the keys and certificates trust names into a cvd.Trust.
func LoadTrust(t config.Trust) (*cvd.Trust, error) {
	trust := &cvd.Trust{AllowUnsigned: t.AllowUnsigned, RequireSign: t.RequireSign}
	for _, p := range t.CVDKeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("trust.cvd_keys: read %s: %w", p, err)
		}
		k, err := cvd.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("trust.cvd_keys: %s: %w", p, err)
		}
		trust.Keys = append(trust.Keys, (*rsa.PublicKey)(k))
	}
	if t.SignCertsDir != "" {
		pool, err := cvd.LoadSignRoots(t.SignCertsDir)
		if err != nil {
			return nil, fmt.Errorf("trust.sign_certs_dir: %w", err)
		}
		trust.SignRoots = pool
	}
	return trust, nil
}
