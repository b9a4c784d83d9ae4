package updater

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
)

// Verifier is internal/cvd under the agent's trust settings. It is an
// interface only so that unit tests of the update logic can run without real
// signed databases; the agent always uses CVDVerifier.
type Verifier interface {
	// Verify checks a downloaded .cvd/.cld/.cud (and the .sign beside it).
	Verify(path string) (*cvd.Info, error)
	// Patch applies cdiffs to base and writes the verified result to out.
	Patch(base string, cdiffs []string, out string) (*cvd.Info, error)
	// Convert rewrites a verified database in another kind.
	Convert(src, dst string, to cvd.Kind) error
}

// CVDVerifier is the real verifier.
type CVDVerifier struct{ Trust *cvd.Trust }

func (v CVDVerifier) Verify(path string) (*cvd.Info, error) { return cvd.Verify(path, v.Trust) }

// Patch applies cdiffs to an installed base. The base was verified when it
// was installed, .sign included; a CLD the agent built by patching can have
// no .sign at all. So require_sign is enforced on the cdiffs only: each
// must have its .sign beside it, and the verifier checks every .sign present.
func (v CVDVerifier) Patch(base string, cdiffs []string, out string) (*cvd.Info, error) {
	t := v.Trust
	if t != nil && t.RequireSign {
		for _, c := range cdiffs {
			if _, err := os.Stat(c + ".sign"); err != nil {
				return nil, &cvd.VerifyError{File: c, Check: cvd.CheckSign,
					Reason: filepath.Base(c) + ".sign is missing and signatures are required (require_sign)", Err: err}
			}
		}
		relaxed := *t
		relaxed.RequireSign = false
		t = &relaxed
	}
	return cvd.Patch(base, cdiffs, out, t)
}

func (v CVDVerifier) Convert(src, dst string, to cvd.Kind) error { return cvd.Convert(src, dst, to) }

// TrustFromConfig builds the verifier's trust from agent.yaml's trust
// section: the same keys as the mirror's, read by the agent itself.
func TrustFromConfig(t config.Trust) (*cvd.Trust, error) {
	tr := &cvd.Trust{RequireSign: t.RequireSign, AllowUnsigned: t.AllowUnsigned}
	for _, p := range t.CVDKeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("trust.cvd_keys: %w", err)
		}
		k, err := cvd.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("trust.cvd_keys: %s: %w", p, err)
		}
		tr.Keys = append(tr.Keys, k)
	}
	if t.SignCertsDir != "" {
		pool, err := cvd.LoadSignRoots(t.SignCertsDir)
		if err != nil {
			return nil, fmt.Errorf("trust.sign_certs_dir: %w", err)
		}
		tr.SignRoots = pool
	}
	return tr, nil
}

// needsCUD reports whether a verified database must be installed as a CUD:
// clamd trusts only ClamAV's own key in a CVD's header (and the .info DSIG of
// a CLD), so a database signed with an organisation's key would be refused
// as a CVD even though avfleet verified it.
func needsCUD(info *cvd.Info) bool {
	return info.SignedBy != "clamav" && info.Kind != cvd.KindCUD
}
