package upstream

import (
	"context"
	"io"
	"time"
)

// Sink is the part of the mirror's store that sync needs. The mirror's
// adapter (package mirrorsink) implements it over *mirror.Store.
type Sink interface {
	// PutIncoming writes r to incoming/name atomically.
	PutIncoming(name string, r io.Reader) error
	// RemoveIncoming removes incoming/name if it is there (a .sign whose
	// database file never arrived must not travel with a later one).
	RemoveIncoming(name string) error
	// Ingest runs the verifier and the rules on incoming/name now. It returns
	// an error wrapping os.ErrNotExist when another process took the file.
	Ingest(ctx context.Context, name, source string) (Ingested, error)
	// Held says what the mirror has verified of db.
	Held(db string) (Held, error)
}

// Outcomes of Ingest, as the mirror names them.
const (
	Accepted = "accepted"
	Ignored  = "ignored"
	Rejected = "rejected"
)

// Ingested is what the pipeline did with one file.
type Ingested struct {
	Outcome string // Accepted, Ignored or Rejected
	Version uint
	Check   string // for rejections: the verifier's check that failed
	Reason  string
}

// Held is what the mirror has verified of one database.
type Held struct {
	Version   uint      // newest verified version, 0 if none
	BuildTime time.Time // its header build time (If-Modified-Since)
}

// State is where sync keeps what must survive a restart (state.db).
type State interface {
	SetSyncResult(SyncResult) error
	// Cooldown returns the cool-down of scope and whether it still runs at now.
	Cooldown(scope string, now time.Time) (Cooldown, bool, error)
	SetCooldown(Cooldown) error
}

// Results of one check of one database (SyncResult.Result).
const (
	ResultCurrent  = "current"  // upstream has nothing newer
	ResultUpdated  = "updated"  // a newer version was accepted
	ResultFailed   = "failed"   // see Error; nothing changed or only part of the way
	ResultCooldown = "cooldown" // upstream asked us to wait; no request was made or the answer was 429/403
)

// SyncResult is the outcome of the last check of one database.
type SyncResult struct {
	Database        string
	CheckedAt       time.Time
	Result          string
	Error           string
	UpstreamVersion uint
}

// Cooldown is a period during which an upstream URL is not asked.
type Cooldown struct {
	Scope  string // the upstream URL
	Until  time.Time
	Reason string
}
