package mirror

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // driver "sqlite"
)

// State is state.db: what the mirror must remember besides files. Holds and
// rollbacks (pins), the rejection log and counters, the latest report of every
// node, and what upstream sync needs across restarts (results, cool-downs).
// The daemon and CLI commands open it at the same time; WAL mode and a busy
// timeout let them share it.
type State struct {
	db *sql.DB
}

const stateSchema = `
CREATE TABLE IF NOT EXISTS pins (
	database TEXT PRIMARY KEY,
	version  INTEGER NOT NULL,
	kind     TEXT NOT NULL,     -- hold | rollback
	since    INTEGER NOT NULL   -- unix seconds
);
CREATE TABLE IF NOT EXISTS rejections (
	id        INTEGER PRIMARY KEY,
	at        INTEGER NOT NULL,
	database  TEXT NOT NULL,    -- "" when the file did not say
	file      TEXT NOT NULL,
	check_name TEXT NOT NULL,
	reason    TEXT NOT NULL,
	source    TEXT NOT NULL,
	stored_as TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_by_db ON rejections(database, at);
CREATE TABLE IF NOT EXISTS counters (
	name  TEXT NOT NULL,
	label TEXT NOT NULL,
	n     INTEGER NOT NULL,
	PRIMARY KEY (name, label)
);
CREATE TABLE IF NOT EXISTS nodes (
	node        TEXT PRIMARY KEY,
	received_at INTEGER NOT NULL,
	report      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_state (
	database         TEXT PRIMARY KEY,
	checked_at       INTEGER NOT NULL,
	result           TEXT NOT NULL,
	error            TEXT NOT NULL,
	upstream_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cooldowns (
	scope  TEXT PRIMARY KEY,
	until  INTEGER NOT NULL,
	reason TEXT NOT NULL
);
`

// keepRejections bounds the rejection log; counters keep the totals.
const keepRejections = 1000

// OpenState opens (creating if needed) the SQLite database at path.
func OpenState(path string) (*State, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	// One connection: writes are serialised here instead of failing with
	// SQLITE_BUSY inside the process; other processes wait on busy_timeout.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(stateSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state database %s: create tables: %w", path, err)
	}
	return &State{db: db}, nil
}

// Close closes the database.
func (s *State) Close() error { return s.db.Close() }

// Pin freezes a database at a version: a hold (at the version served when it
// was placed) or a rollback (to an older verified version).
type Pin struct {
	Database string    `json:"database"`
	Version  uint      `json:"version"`
	Kind     string    `json:"kind"` // "hold" or "rollback"
	Since    time.Time `json:"since"`
}

// Pins returns every pin by database.
func (s *State) Pins() (map[string]Pin, error) {
	rows, err := s.db.Query(`SELECT database, version, kind, since FROM pins`)
	if err != nil {
		return nil, fmt.Errorf("read pins from state.db: %w", err)
	}
	defer rows.Close()
	out := map[string]Pin{}
	for rows.Next() {
		var p Pin
		var since int64
		if err := rows.Scan(&p.Database, &p.Version, &p.Kind, &since); err != nil {
			return nil, fmt.Errorf("read pins from state.db: %w", err)
		}
		p.Since = time.Unix(since, 0).UTC()
		out[p.Database] = p
	}
	return out, rows.Err()
}

// SetPin places or replaces the pin of p.Database.
func (s *State) SetPin(p Pin) error {
	_, err := s.db.Exec(`INSERT INTO pins(database, version, kind, since) VALUES(?,?,?,?)
		ON CONFLICT(database) DO UPDATE SET version=excluded.version, kind=excluded.kind, since=excluded.since`,
		p.Database, p.Version, p.Kind, p.Since.Unix())
	if err != nil {
		return fmt.Errorf("store %s of %s in state.db: %w", p.Kind, p.Database, err)
	}
	return nil
}

// DeletePin removes the pin of db and reports whether there was one.
func (s *State) DeletePin(db string) (bool, error) {
	r, err := s.db.Exec(`DELETE FROM pins WHERE database = ?`, db)
	if err != nil {
		return false, fmt.Errorf("remove pin of %s from state.db: %w", db, err)
	}
	n, _ := r.RowsAffected()
	return n > 0, nil
}

// Rejection is one rejected file, as logged.
type Rejection struct {
	Time     time.Time `json:"time"`
	Database string    `json:"database"`
	File     string    `json:"file"`
	Check    string    `json:"check"`
	Reason   string    `json:"reason"`
	Source   string    `json:"source"`
	StoredAs string    `json:"stored_as"`
}

// recordOutcome counts one pipeline outcome and logs a rejection, in one
// transaction so counters and log agree.
func (s *State) recordOutcome(outcome Outcome, rej *Rejection) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("record %s in state.db: %w", outcome, err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO counters(name,label,n) VALUES('imports',?,1)
		ON CONFLICT(name,label) DO UPDATE SET n = n + 1`, string(outcome)); err != nil {
		return fmt.Errorf("record %s in state.db: %w", outcome, err)
	}
	if rej != nil {
		if _, err := tx.Exec(`INSERT INTO counters(name,label,n) VALUES('rejections',?,1)
			ON CONFLICT(name,label) DO UPDATE SET n = n + 1`, rej.Check); err != nil {
			return fmt.Errorf("record rejection in state.db: %w", err)
		}
		if _, err := tx.Exec(`INSERT INTO rejections(at,database,file,check_name,reason,source,stored_as) VALUES(?,?,?,?,?,?,?)`,
			rej.Time.Unix(), rej.Database, rej.File, rej.Check, rej.Reason, rej.Source, rej.StoredAs); err != nil {
			return fmt.Errorf("record rejection in state.db: %w", err)
		}
		if _, err := tx.Exec(`DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - ?`, keepRejections); err != nil {
			return fmt.Errorf("trim rejection log in state.db: %w", err)
		}
	}
	return tx.Commit()
}

// Rejections returns the newest rejections, newest first; db "" means all.
func (s *State) Rejections(db string, limit int) ([]Rejection, error) {
	q := `SELECT at,database,file,check_name,reason,source,stored_as FROM rejections`
	args := []any{}
	if db != "" {
		q += ` WHERE database = ?`
		args = append(args, db)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("read rejections from state.db: %w", err)
	}
	defer rows.Close()
	var out []Rejection
	for rows.Next() {
		var r Rejection
		var at int64
		if err := rows.Scan(&at, &r.Database, &r.File, &r.Check, &r.Reason, &r.Source, &r.StoredAs); err != nil {
			return nil, fmt.Errorf("read rejections from state.db: %w", err)
		}
		r.Time = time.Unix(at, 0).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// Counters returns the totals of one counter family ("imports": by outcome,
// "rejections": by check) since state.db was created.
func (s *State) Counters(name string) (map[string]int64, error) {
	rows, err := s.db.Query(`SELECT label, n FROM counters WHERE name = ?`, name)
	if err != nil {
		return nil, fmt.Errorf("read counters from state.db: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var l string
		var n int64
		if err := rows.Scan(&l, &n); err != nil {
			return nil, fmt.Errorf("read counters from state.db: %w", err)
		}
		out[l] = n
	}
	return out, rows.Err()
}

// NodeRecord is the latest report of one node as stored.
type NodeRecord struct {
	Node       string
	ReceivedAt time.Time
	Report     []byte // the JSON body as received (validated)
}

// PutNodeReport stores the latest report of a node, replacing the previous.
func (s *State) PutNodeReport(node string, at time.Time, report []byte) error {
	_, err := s.db.Exec(`INSERT INTO nodes(node, received_at, report) VALUES(?,?,?)
		ON CONFLICT(node) DO UPDATE SET received_at=excluded.received_at, report=excluded.report`,
		node, at.Unix(), string(report))
	if err != nil {
		return fmt.Errorf("store report of node %s in state.db: %w", node, err)
	}
	return nil
}

// NodeReports returns the latest report of every node.
func (s *State) NodeReports() ([]NodeRecord, error) {
	rows, err := s.db.Query(`SELECT node, received_at, report FROM nodes ORDER BY node`)
	if err != nil {
		return nil, fmt.Errorf("read node reports from state.db: %w", err)
	}
	defer rows.Close()
	var out []NodeRecord
	for rows.Next() {
		var r NodeRecord
		var at int64
		var rep string
		if err := rows.Scan(&r.Node, &at, &rep); err != nil {
			return nil, fmt.Errorf("read node reports from state.db: %w", err)
		}
		r.ReceivedAt = time.Unix(at, 0).UTC()
		r.Report = []byte(rep)
		out = append(out, r)
	}
	return out, rows.Err()
}

// SyncResult is the outcome of the last upstream check of one database.
type SyncResult struct {
	Database        string    `json:"database"`
	CheckedAt       time.Time `json:"checked_at"`
	Result          string    `json:"result"` // e.g. "current", "updated", "failed", "cooldown"
	Error           string    `json:"error,omitempty"`
	UpstreamVersion uint      `json:"upstream_version,omitempty"`
}

// SetSyncResult records the last upstream check of r.Database.
func (s *State) SetSyncResult(r SyncResult) error {
	_, err := s.db.Exec(`INSERT INTO sync_state(database, checked_at, result, error, upstream_version) VALUES(?,?,?,?,?)
		ON CONFLICT(database) DO UPDATE SET checked_at=excluded.checked_at, result=excluded.result,
		error=excluded.error, upstream_version=excluded.upstream_version`,
		r.Database, r.CheckedAt.Unix(), r.Result, r.Error, r.UpstreamVersion)
	if err != nil {
		return fmt.Errorf("store sync result of %s in state.db: %w", r.Database, err)
	}
	return nil
}

// SyncResults returns the last upstream check of every database.
func (s *State) SyncResults() (map[string]SyncResult, error) {
	rows, err := s.db.Query(`SELECT database, checked_at, result, error, upstream_version FROM sync_state`)
	if err != nil {
		return nil, fmt.Errorf("read sync results from state.db: %w", err)
	}
	defer rows.Close()
	out := map[string]SyncResult{}
	for rows.Next() {
		var r SyncResult
		var at int64
		if err := rows.Scan(&r.Database, &at, &r.Result, &r.Error, &r.UpstreamVersion); err != nil {
			return nil, fmt.Errorf("read sync results from state.db: %w", err)
		}
		r.CheckedAt = time.Unix(at, 0).UTC()
		out[r.Database] = r
	}
	return out, rows.Err()
}

// Cooldown is a period during which upstream must not be asked (429
// Retry-After, 24 h after a 403). Scope is an upstream URL or a database.
type Cooldown struct {
	Scope  string    `json:"scope"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// SetCooldown records (or, with a zero until, clears) a cool-down.
func (s *State) SetCooldown(c Cooldown) error {
	var err error
	if c.Until.IsZero() {
		_, err = s.db.Exec(`DELETE FROM cooldowns WHERE scope = ?`, c.Scope)
	} else {
		_, err = s.db.Exec(`INSERT INTO cooldowns(scope, until, reason) VALUES(?,?,?)
			ON CONFLICT(scope) DO UPDATE SET until=excluded.until, reason=excluded.reason`,
			c.Scope, c.Until.Unix(), c.Reason)
	}
	if err != nil {
		return fmt.Errorf("store cool-down of %s in state.db: %w", c.Scope, err)
	}
	return nil
}

// Cooldown returns the cool-down of scope if one is still running at now.
func (s *State) Cooldown(scope string, now time.Time) (Cooldown, bool, error) {
	var c Cooldown
	var until int64
	err := s.db.QueryRow(`SELECT scope, until, reason FROM cooldowns WHERE scope = ?`, scope).Scan(&c.Scope, &until, &c.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return Cooldown{}, false, nil
	}
	if err != nil {
		return Cooldown{}, false, fmt.Errorf("read cool-down of %s from state.db: %w", scope, err)
	}
	c.Until = time.Unix(until, 0).UTC()
	return c, c.Until.After(now), nil
}

// Cooldowns returns every cool-down still running at now.
func (s *State) Cooldowns(now time.Time) ([]Cooldown, error) {
	rows, err := s.db.Query(`SELECT scope, until, reason FROM cooldowns WHERE until > ? ORDER BY scope`, now.Unix())
	if err != nil {
		return nil, fmt.Errorf("read cool-downs from state.db: %w", err)
	}
	defer rows.Close()
	var out []Cooldown
	for rows.Next() {
		var c Cooldown
		var until int64
		if err := rows.Scan(&c.Scope, &until, &c.Reason); err != nil {
			return nil, fmt.Errorf("read cool-downs from state.db: %w", err)
		}
		c.Until = time.Unix(until, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
