package mirror

import (
	"fmt"

	"github.com/avfleet/avfleet/internal/cvd"
)

// Outcome is what the pipeline did with a file.
type Outcome string

const (
	Accepted Outcome = "accepted" // verified and stored; served unless the database is held
	Ignored  Outcome = "ignored"  // already held (same version): nothing to do, not an error
	Rejected Outcome = "rejected" // moved to rejected/ with a .reason file
)

// decision is the rules' verdict on a file that passed verification on its own.
type decision struct {
	outcome Outcome
	check   cvd.Check
	reason  string
}

func accept() decision { return decision{outcome: Accepted} }
func ignore(reason string) decision {
	return decision{outcome: Ignored, reason: reason}
}
func reject(check cvd.Check, format string, a ...any) decision {
	return decision{outcome: Rejected, check: check, reason: fmt.Sprintf(format, a...)}
}

// decideFull rules on a full database (signed CVD or unsigned CUD) of
// version v: it must be newer than the newest full database held and not
// older than the version cdiffs have reached. test-6.cvd after
// test-2..6.cdiff patched test-1 to version 6 is therefore accepted: a full
// signed file of the version the CLD already has is what /{db}.cvd should be.
func decideFull(h *dbHistory, v uint, signedBy, sha string) decision {
	if h == nil {
		return accept()
	}
	if f := h.versions[v]; f != nil && f.full != nil {
		if f.full.SHA256 == sha {
			return ignore(fmt.Sprintf("version %d is already verified", v))
		}
		return ignore(fmt.Sprintf("a full database of version %d is already verified (this file differs from it; keeping the first)", v))
	}
	newest := h.newest()
	full := h.newestFull(^uint(0))
	if full != nil && v <= full.Version || v < newest {
		n := newest
		if full != nil && full.Version > n {
			n = full.Version
		}
		return reject(cvd.CheckVersion, "not newer than verified version %d", n)
	}
	if d := decideSigner(h, signedBy); d.outcome == Rejected {
		return d
	}
	return accept()
}

// decideSigner stops a database from changing hands: a file for a database
// that so far came signed by ClamAV must be signed by ClamAV, and a signed
// database cannot be continued by an unsigned one. (An organisation rotating
// its own key is allowed: both keys are in trust.cvd_keys.)
func decideSigner(h *dbHistory, signedBy string) decision {
	prev := h.newestFull(^uint(0))
	if prev == nil {
		return accept()
	}
	switch {
	case prev.SignedBy == cvd.SignedByClamAV && signedBy != cvd.SignedByClamAV:
		return reject(cvd.CheckSignature, "database %s is signed by ClamAV, this file is signed by %s", h.name, signedBy)
	case prev.SignedBy != cvd.SignedByUnsigned && signedBy == cvd.SignedByUnsigned:
		return reject(cvd.CheckUnsigned, "database %s is signed (%s), this file is unsigned", h.name, prev.SignedBy)
	}
	return accept()
}

// decideCLD rules on a CLD someone imported: a whole database of version v
// that the mirror did not build. It counts like a version reached by cdiffs.
func decideCLD(h *dbHistory, v uint, sha string) decision {
	if h == nil {
		return accept()
	}
	if f := h.versions[v]; f != nil && f.database() != nil {
		if f.cld != nil && f.cld.SHA256 == sha || f.full != nil {
			return ignore(fmt.Sprintf("version %d is already verified", v))
		}
	}
	if n := h.newest(); v <= n {
		return reject(cvd.CheckVersion, "not newer than verified version %d", n)
	}
	return accept()
}

// decideCDiff rules on a cdiff producing version v: it must apply to the
// newest version held (N -> N+1). Whether the patched result verifies is
// checked afterwards, by patching.
func decideCDiff(h *dbHistory, db string, v uint, sha string) decision {
	if h == nil || h.newest() == 0 {
		return reject(cvd.CheckVersion, "no verified version of %s to apply it to (import a full %s.cvd first)", db, db)
	}
	if f := h.versions[v]; f != nil && f.cdiff != nil && f.cdiff.SHA256 == sha {
		return ignore(fmt.Sprintf("cdiff to version %d is already verified", v))
	}
	n := h.newest()
	if v != n+1 {
		return reject(cvd.CheckVersion, "cdiff to version %d does not apply to verified version %d (needs %d)", v, n, n+1)
	}
	return accept()
}
