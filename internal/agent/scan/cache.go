package scan

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// Cache remembers files found clean, keyed by device and inode and checked
// against size, mtime and ctime (ctime changes with any write, chmod, chown
// or rename and cannot be set back by a user), under the definitions that
// scanned them. A file whose stat differs, or any file after the definitions
// change, is scanned again.
type Cache struct {
	db   *sql.DB
	path string
}

// fileKey is what a clean result is remembered by.
type fileKey struct {
	dev, ino           uint64
	size, mtime, ctime int64 // mtime and ctime in nanoseconds
}

const cacheSchema = `
CREATE TABLE IF NOT EXISTS defs (
	id  INTEGER PRIMARY KEY AUTOINCREMENT,
	key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS clean (
	dev   INTEGER NOT NULL,
	ino   INTEGER NOT NULL,
	size  INTEGER NOT NULL,
	mtime INTEGER NOT NULL,
	ctime INTEGER NOT NULL,
	defs  INTEGER NOT NULL,
	PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
`

// OpenCache opens (creating if needed) the cache at path. Synchronous=NORMAL
// in WAL mode: a crash can lose the last clean results, which only means
// scanning those files again.
func OpenCache(path string) (*Cache, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open scan cache %s: %w", path, err)
	}
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open scan cache %s: %w", path, err)
	}
	if _, err := db.Exec(cacheSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open scan cache %s: create tables: %w (delete the file to start afresh; it only saves time)", path, err)
	}
	return &Cache{db: db, path: path}, nil
}

// Close closes the database.
func (c *Cache) Close() error { return c.db.Close() }

// cacheRun is the cache as one scan uses it: lookups under one definitions
// key, and writes batched into transactions by one goroutine.
type cacheRun struct {
	c      *Cache
	defs   int64
	empty  bool // nothing was known clean when the scan began
	lookup *sql.Stmt
	ops    chan []cacheOp

	mu   sync.Mutex
	pend []cacheOp // not yet handed to the writer
	done chan error
}

type cacheOp struct {
	k      fileKey
	forget bool
}

const (
	cacheBatch   = 2000
	cacheHandOff = 64
	cacheFlush   = time.Second
)

// begin starts a scan's use of the cache under the definitions key defs,
// dropping what older definitions found clean.
func (c *Cache) begin(ctx context.Context, defs string, readers int) (*cacheRun, error) {
	c.db.SetMaxOpenConns(readers + 2)
	c.db.SetMaxIdleConns(readers + 2)
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO defs(key) VALUES (?)`, defs); err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM defs WHERE key = ?`, defs).Scan(&id); err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM clean WHERE defs != ?`, id); err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM defs WHERE id != ?`, id); err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	// After a definitions change (several times a day with daily updates)
	// nothing is known clean: skip the lookups, one per file, altogether.
	var known bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM clean WHERE defs = ?)`, id).Scan(&known); err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	st, err := c.db.PrepareContext(ctx, `SELECT size, mtime, ctime FROM clean WHERE dev = ? AND ino = ? AND defs = ?`)
	if err != nil {
		return nil, fmt.Errorf("scan cache %s: %w", c.path, err)
	}
	r := &cacheRun{c: c, defs: id, empty: !known, lookup: st, ops: make(chan []cacheOp, 4*cacheBatch/cacheHandOff), done: make(chan error, 1)}
	go r.writer()
	return r, nil
}

// clean reports whether k was found clean under this run's definitions. A
// lookup error counts as "not known clean": the file is scanned.
func (r *cacheRun) clean(k fileKey) bool {
	if r.empty {
		return false
	}
	var size, mtime, ctime int64
	err := r.lookup.QueryRow(int64(k.dev), int64(k.ino), r.defs).Scan(&size, &mtime, &ctime)
	return err == nil && size == k.size && mtime == k.mtime && ctime == k.ctime
}

// put records k as clean; forget drops what is known about k's file.
func (r *cacheRun) put(k fileKey)    { r.add(cacheOp{k: k}) }
func (r *cacheRun) forget(k fileKey) { r.add(cacheOp{k: k, forget: true}) }

// add queues op for the writer in slices of cacheHandOff: one hand-off (a
// goroutine wake-up) per file cost a noticeable part of a scan's own CPU.
func (r *cacheRun) add(op cacheOp) {
	r.mu.Lock()
	r.pend = append(r.pend, op)
	var full []cacheOp
	if len(r.pend) >= cacheHandOff {
		full, r.pend = r.pend, make([]cacheOp, 0, cacheHandOff)
	}
	r.mu.Unlock()
	if full != nil {
		r.ops <- full
	}
}

// close writes what is pending and stops the writer.
func (r *cacheRun) close() error {
	r.mu.Lock()
	if len(r.pend) > 0 {
		r.ops <- r.pend
		r.pend = nil
	}
	r.mu.Unlock()
	close(r.ops)
	err := <-r.done
	r.lookup.Close()
	return err
}

func (r *cacheRun) writer() {
	var batch []cacheOp
	var firstErr error
	t := time.NewTimer(cacheFlush)
	defer t.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := r.write(batch); err != nil && firstErr == nil {
			firstErr = err
		}
		batch = batch[:0]
	}
	for {
		select {
		case ops, ok := <-r.ops:
			if !ok {
				flush()
				r.done <- firstErr
				return
			}
			batch = append(batch, ops...)
			if len(batch) >= cacheBatch {
				flush()
			}
		case <-t.C:
			flush()
			t.Reset(cacheFlush)
		}
	}
}

func (r *cacheRun) write(batch []cacheOp) error {
	tx, err := r.c.db.Begin()
	if err != nil {
		return fmt.Errorf("scan cache %s: %w", r.c.path, err)
	}
	defer tx.Rollback()
	ins, err := tx.Prepare(`INSERT OR REPLACE INTO clean(dev, ino, size, mtime, ctime, defs) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("scan cache %s: %w", r.c.path, err)
	}
	del, err := tx.Prepare(`DELETE FROM clean WHERE dev = ? AND ino = ?`)
	if err != nil {
		return fmt.Errorf("scan cache %s: %w", r.c.path, err)
	}
	for _, op := range batch {
		k := op.k
		if op.forget {
			_, err = del.Exec(int64(k.dev), int64(k.ino))
		} else {
			_, err = ins.Exec(int64(k.dev), int64(k.ino), k.size, k.mtime, k.ctime, r.defs)
		}
		if err != nil {
			return fmt.Errorf("scan cache %s: %w", r.c.path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("scan cache %s: commit: %w", r.c.path, err)
	}
	return nil
}
