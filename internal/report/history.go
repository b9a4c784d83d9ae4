package report

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// HistoryFile is the history database's name in the agent's state_dir.
const HistoryFile = "history.db"

// migrations[i] takes the schema from user_version i to i+1. Append only:
// a released migration is never edited, since agents in the field ran it.
var migrations = []string{
	`CREATE TABLE scans (
		id               INTEGER PRIMARY KEY,
		scan_id          TEXT    NOT NULL UNIQUE,
		node             TEXT    NOT NULL,
		trigger          TEXT    NOT NULL,
		result           TEXT    NOT NULL,
		error            TEXT    NOT NULL,
		start_ns         INTEGER NOT NULL, -- Unix time in nanoseconds
		end_ns           INTEGER NOT NULL,
		duration_ns      INTEGER NOT NULL,
		paths            TEXT    NOT NULL, -- JSON array
		files            INTEGER NOT NULL,
		bytes            INTEGER NOT NULL,
		skipped          INTEGER NOT NULL,
		skipped_by_reason TEXT   NOT NULL, -- JSON object
		errors           INTEGER NOT NULL,
		detections       INTEGER NOT NULL,
		incremental_hits INTEGER NOT NULL,
		containers       INTEGER NOT NULL,
		db_versions      TEXT    NOT NULL  -- JSON object
	);
	CREATE INDEX scans_end ON scans(end_ns);
	CREATE INDEX scans_trigger_end ON scans(trigger, end_ns);
	CREATE TABLE detections (
		id             INTEGER PRIMARY KEY,
		scan_id        TEXT    NOT NULL,
		time_ns        INTEGER NOT NULL,
		node           TEXT    NOT NULL,
		container      TEXT    NOT NULL,
		path           TEXT    NOT NULL,
		container_path TEXT    NOT NULL,
		signature      TEXT    NOT NULL,
		action         TEXT    NOT NULL,
		action_result  TEXT    NOT NULL,
		action_error   TEXT    NOT NULL,
		quarantine_id  TEXT    NOT NULL,
		db_versions    TEXT    NOT NULL
	);
	CREATE INDEX detections_time ON detections(time_ns);
	CREATE INDEX detections_scan ON detections(scan_id);
	CREATE TABLE updates (
		id           INTEGER PRIMARY KEY,
		time_ns      INTEGER NOT NULL,
		node         TEXT    NOT NULL,
		result       TEXT    NOT NULL,
		source       TEXT    NOT NULL,
		old_versions TEXT    NOT NULL,
		new_versions TEXT    NOT NULL,
		bytes        INTEGER NOT NULL,
		duration_ns  INTEGER NOT NULL,
		error        TEXT    NOT NULL,
		stale        INTEGER NOT NULL
	);
	CREATE INDEX updates_time ON updates(time_ns);`,
}

// schemaVersion is the history schema this build writes (PRAGMA user_version).
var schemaVersion = len(migrations)

// History is the SQLite record of scans, detections and definitions updates
// in state_dir. It is safe for concurrent use, also across processes: the
// agent writes while `avfleet` commands read (WAL mode, busy timeout,
// write transactions that take the lock up front).
type History struct {
	db   *sql.DB
	path string
}

// busyTimeout is how long a writer waits for another process's write; the
// agent's writes are single small transactions, so this is generous.
const busyTimeout = 10 * time.Second

// OpenHistory opens (creating if needed) the history at path and migrates
// its schema. Commits are durable (synchronous=FULL): the history is audit
// evidence and is written a few times per scan, so the fsync costs nothing
// that matters.
func OpenHistory(path string) (*History, error) {
	dsn, err := historyDSN(path, fmt.Sprintf("_busy_timeout=%d&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate", busyTimeout.Milliseconds()))
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	h := &History{db: db, path: path}
	if err := h.migrate(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	return h, nil
}

// OpenHistoryReadOnly opens an existing history for queries, as the CLI does
// while the agent runs. It never creates or migrates the file.
func OpenHistoryReadOnly(path string) (*History, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open history %s: %w (has the agent run yet?)", path, err)
	}
	dsn, err := historyDSN(path, fmt.Sprintf("mode=ro&_busy_timeout=%d&_query_only=1", busyTimeout.Milliseconds()))
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	h := &History{db: db, path: path}
	v, err := h.userVersion(context.Background(), db)
	if err == nil && v != schemaVersion {
		err = fmt.Errorf("schema version %d, this avfleet reads version %d (start the agent of this version once to migrate it)", v, schemaVersion)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	return h, nil
}

func historyDSN(path, query string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("open history %s: %w", path, err)
	}
	// A file: URI so that SQLite honours mode=ro; the path is escaped so
	// that '?', '#' and '%' in a directory name stay part of the name.
	return "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + query, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (h *History) userVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// migrate runs inside one write transaction, so two processes opening a new
// file at once cannot both create the tables.
func (h *History) migrate(ctx context.Context) error {
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("open history %s: begin migration: %w", h.path, err)
	}
	defer tx.Rollback()
	v, err := h.userVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("open history %s: %w", h.path, err)
	}
	if v > schemaVersion {
		return fmt.Errorf("open history %s: schema version %d is newer than this avfleet's %d (downgrade? keep the newer avfleet or move the file away)", h.path, v, schemaVersion)
	}
	if v == schemaVersion {
		return nil
	}
	for i := v; i < schemaVersion; i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("open history %s: migrate schema %d -> %d: %w", h.path, i, i+1, err)
		}
	}
	// PRAGMA takes no bound parameters; schemaVersion is a constant.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("open history %s: set schema version: %w", h.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("open history %s: commit migration: %w", h.path, err)
	}
	return nil
}

// Path is the file the history lives in.
func (h *History) Path() string { return h.path }

// Close closes the database; SQLite checkpoints the WAL into the main file.
func (h *History) Close() error { return h.db.Close() }

// Report stores detections, scan summaries and updates; alerts are not
// stored (updates carry the stale flag).
func (h *History) Report(ctx context.Context, ev Event) error {
	switch e := ev.(type) {
	case Detection:
		return h.InsertDetection(ctx, e)
	case ScanSummary:
		return h.InsertScan(ctx, e)
	case UpdateEvent:
		return h.InsertUpdate(ctx, e)
	}
	return nil
}

// InsertScan stores a scan summary and, in the same transaction, any
// detections given. Storing a summary again with the same ScanID replaces it.
func (h *History) InsertScan(ctx context.Context, s ScanSummary, dets ...Detection) error {
	if s.ScanID == "" {
		return fmt.Errorf("history %s: store scan: no scan ID", h.path)
	}
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("history %s: store scan %s: %w", h.path, s.ScanID, err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO scans (scan_id, node, trigger, result, error, start_ns, end_ns, duration_ns,
		paths, files, bytes, skipped, skipped_by_reason, errors, detections, incremental_hits, containers, db_versions)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(scan_id) DO UPDATE SET node=excluded.node, trigger=excluded.trigger, result=excluded.result,
		error=excluded.error, start_ns=excluded.start_ns, end_ns=excluded.end_ns, duration_ns=excluded.duration_ns,
		paths=excluded.paths, files=excluded.files, bytes=excluded.bytes, skipped=excluded.skipped,
		skipped_by_reason=excluded.skipped_by_reason, errors=excluded.errors, detections=excluded.detections,
		incremental_hits=excluded.incremental_hits, containers=excluded.containers, db_versions=excluded.db_versions`,
		s.ScanID, s.Node, s.Trigger, s.Result, s.Error, toNS(s.Start), toNS(s.End), int64(s.Duration),
		jsonText(nonNil(s.Paths)), s.Files, s.Bytes, s.Skipped, jsonText(s.SkippedByReason), s.Errors, s.Detections,
		s.IncrementalHits, s.Containers, jsonText(s.DBVersions))
	if err != nil {
		return fmt.Errorf("history %s: store scan %s: %w", h.path, s.ScanID, err)
	}
	for _, d := range dets {
		if err := insertDetection(ctx, tx, d); err != nil {
			return fmt.Errorf("history %s: store detection of scan %s: %w", h.path, s.ScanID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history %s: store scan %s: commit: %w", h.path, s.ScanID, err)
	}
	return nil
}

// InsertDetection stores one detection as it happens, before its scan ends.
func (h *History) InsertDetection(ctx context.Context, d Detection) error {
	if err := insertDetection(ctx, h.db, d); err != nil {
		return fmt.Errorf("history %s: store detection %s: %w", h.path, d.Path, err)
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertDetection(ctx context.Context, x execer, d Detection) error {
	_, err := x.ExecContext(ctx, `INSERT INTO detections (scan_id, time_ns, node, container, path, container_path,
		signature, action, action_result, action_error, quarantine_id, db_versions) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		d.ScanID, toNS(d.Time), d.Node, d.Container, d.Path, d.ContainerPath, d.Signature, d.Action,
		d.ActionResult, d.ActionError, d.QuarantineID, jsonText(d.DBVersions))
	return err
}

// InsertUpdate stores one definitions update cycle.
func (h *History) InsertUpdate(ctx context.Context, u UpdateEvent) error {
	_, err := h.db.ExecContext(ctx, `INSERT INTO updates (time_ns, node, result, source, old_versions, new_versions,
		bytes, duration_ns, error, stale) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		toNS(u.Time), u.Node, u.Result, u.Source, jsonText(u.OldVersions), jsonText(u.NewVersions),
		u.Bytes, int64(u.Duration), u.Error, u.Stale)
	if err != nil {
		return fmt.Errorf("history %s: store update: %w", h.path, err)
	}
	return nil
}

const scanColumns = `scan_id, node, trigger, result, error, start_ns, end_ns, duration_ns, paths, files, bytes,
	skipped, skipped_by_reason, errors, detections, incremental_hits, containers, db_versions`

// RecentScans returns up to limit scans, newest first.
func (h *History) RecentScans(ctx context.Context, limit int) ([]ScanSummary, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT `+scanColumns+` FROM scans ORDER BY end_ns DESC, id DESC LIMIT ?`, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("history %s: read scans: %w", h.path, err)
	}
	defer rows.Close()
	var out []ScanSummary
	for rows.Next() {
		var s ScanSummary
		var start, end, dur int64
		var paths, skipped, dbv string
		if err := rows.Scan(&s.ScanID, &s.Node, &s.Trigger, &s.Result, &s.Error, &start, &end, &dur, &paths,
			&s.Files, &s.Bytes, &s.Skipped, &skipped, &s.Errors, &s.Detections, &s.IncrementalHits,
			&s.Containers, &dbv); err != nil {
			return nil, fmt.Errorf("history %s: read scans: %w", h.path, err)
		}
		s.Start, s.End, s.Duration = fromNS(start), fromNS(end), time.Duration(dur)
		if err := errors.Join(unjson(paths, &s.Paths), unjson(skipped, &s.SkippedByReason), unjson(dbv, &s.DBVersions)); err != nil {
			return nil, fmt.Errorf("history %s: read scan %s: %w", h.path, s.ScanID, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history %s: read scans: %w", h.path, err)
	}
	return out, nil
}

// LastScanTime returns when the newest scan with this trigger ended ("" =
// any trigger), or the zero time if there is none. The scheduler uses it to
// tell whether a scheduled scan is due after a restart.
func (h *History) LastScanTime(ctx context.Context, trigger string) (time.Time, error) {
	var ns sql.NullInt64
	var err error
	if trigger == "" {
		err = h.db.QueryRowContext(ctx, `SELECT MAX(end_ns) FROM scans`).Scan(&ns)
	} else {
		err = h.db.QueryRowContext(ctx, `SELECT MAX(end_ns) FROM scans WHERE trigger = ?`, trigger).Scan(&ns)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("history %s: read last scan time: %w", h.path, err)
	}
	if !ns.Valid {
		return time.Time{}, nil
	}
	return fromNS(ns.Int64), nil
}

// DetectionsSince returns detections at or after since, oldest first, at
// most limit (0 = all).
func (h *History) DetectionsSince(ctx context.Context, since time.Time, limit int) ([]Detection, error) {
	return h.detections(ctx, `WHERE time_ns >= ? ORDER BY time_ns, id LIMIT ?`, toNS(since), limitArg(limit))
}

// ScanDetections returns the detections of one scan, oldest first.
func (h *History) ScanDetections(ctx context.Context, scanID string) ([]Detection, error) {
	return h.detections(ctx, `WHERE scan_id = ? ORDER BY time_ns, id`, scanID)
}

func (h *History) detections(ctx context.Context, where string, args ...any) ([]Detection, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT scan_id, time_ns, node, container, path, container_path, signature,
		action, action_result, action_error, quarantine_id, db_versions FROM detections `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("history %s: read detections: %w", h.path, err)
	}
	defer rows.Close()
	var out []Detection
	for rows.Next() {
		var d Detection
		var ns int64
		var dbv string
		if err := rows.Scan(&d.ScanID, &ns, &d.Node, &d.Container, &d.Path, &d.ContainerPath, &d.Signature,
			&d.Action, &d.ActionResult, &d.ActionError, &d.QuarantineID, &dbv); err != nil {
			return nil, fmt.Errorf("history %s: read detections: %w", h.path, err)
		}
		d.Time = fromNS(ns)
		if err := unjson(dbv, &d.DBVersions); err != nil {
			return nil, fmt.Errorf("history %s: read detection %s: %w", h.path, d.Path, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history %s: read detections: %w", h.path, err)
	}
	return out, nil
}

// DetectionCountSince counts detections at or after since.
func (h *History) DetectionCountSince(ctx context.Context, since time.Time) (int64, error) {
	var n int64
	if err := h.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM detections WHERE time_ns >= ?`, toNS(since)).Scan(&n); err != nil {
		return 0, fmt.Errorf("history %s: count detections: %w", h.path, err)
	}
	return n, nil
}

// RecentUpdates returns up to limit update cycles, newest first.
func (h *History) RecentUpdates(ctx context.Context, limit int) ([]UpdateEvent, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT time_ns, node, result, source, old_versions, new_versions, bytes,
		duration_ns, error, stale FROM updates ORDER BY time_ns DESC, id DESC LIMIT ?`, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("history %s: read updates: %w", h.path, err)
	}
	defer rows.Close()
	var out []UpdateEvent
	for rows.Next() {
		var u UpdateEvent
		var ns, dur int64
		var oldv, newv string
		if err := rows.Scan(&ns, &u.Node, &u.Result, &u.Source, &oldv, &newv, &u.Bytes, &dur, &u.Error, &u.Stale); err != nil {
			return nil, fmt.Errorf("history %s: read updates: %w", h.path, err)
		}
		u.Time, u.Duration = fromNS(ns), time.Duration(dur)
		if err := errors.Join(unjson(oldv, &u.OldVersions), unjson(newv, &u.NewVersions)); err != nil {
			return nil, fmt.Errorf("history %s: read update: %w", h.path, err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history %s: read updates: %w", h.path, err)
	}
	return out, nil
}

// Pruned counts the rows a Prune removed.
type Pruned struct {
	Scans, Detections, Updates int64
}

// Prune deletes scans that ended, and detections and updates that happened,
// before cutoff (for "keep N days": time.Now().AddDate(0, 0, -N)), in one
// transaction.
func (h *History) Prune(ctx context.Context, cutoff time.Time) (Pruned, error) {
	var p Pruned
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return p, fmt.Errorf("history %s: prune: %w", h.path, err)
	}
	defer tx.Rollback()
	c := toNS(cutoff)
	for _, q := range []struct {
		sql string
		n   *int64
	}{
		{`DELETE FROM scans WHERE end_ns < ?`, &p.Scans},
		{`DELETE FROM detections WHERE time_ns < ?`, &p.Detections},
		{`DELETE FROM updates WHERE time_ns < ?`, &p.Updates},
	} {
		res, err := tx.ExecContext(ctx, q.sql, c)
		if err != nil {
			return Pruned{}, fmt.Errorf("history %s: prune: %w", h.path, err)
		}
		*q.n, _ = res.RowsAffected()
	}
	if err := tx.Commit(); err != nil {
		return Pruned{}, fmt.Errorf("history %s: prune: commit: %w", h.path, err)
	}
	return p, nil
}

// toNS stores the zero time as 0 (its UnixNano would overflow).
func toNS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func limitArg(limit int) int {
	if limit <= 0 {
		return -1 // SQLite: no limit
	}
	return limit
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps and slices of plain types reach here; they always marshal.
		panic(fmt.Sprintf("report: marshal %T: %v", v, err))
	}
	return string(b)
}

func unjson(s string, v any) error {
	if s == "" || s == "null" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}
