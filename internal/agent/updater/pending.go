package updater

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/fsutil"
	"github.com/avfleet/avfleet/internal/report"
)

// pendingFile (state_dir/pending) records that db was switched to a set
// clamd has not yet been seen to load. It is written, and made durable,
// before the switch and removed once clamd confirms the set (or after the
// previous set was put back). An agent that finds it at start knows that it
// died in between, or that `agent update` installed a set while no clamd
// ran, and checks that clamd can load the set before trusting it.
const pendingFile = "pending"

// maxPendingSize bounds what is read of the marker: a few dozen bytes are
// written.
const maxPendingSize = 4096

// Pending is an unconfirmed switch of db.
type Pending struct {
	Set  string    `json:"set"`  // the set db was switched to
	Prev string    `json:"prev"` // the set it replaced, "" on a first install
	Time time.Time `json:"time"` // when the switch was made
}

// parsePending reads the marker; every set name must be one Commit could
// have made, so the marker cannot point the store outside sets/.
func parsePending(b []byte) (*Pending, error) {
	if len(b) > maxPendingSize {
		return nil, fmt.Errorf("larger than %d bytes", maxPendingSize)
	}
	var p Pending
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("not the JSON avfleet writes: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not the JSON avfleet writes: data after the object")
	}
	if !setName(p.Set) {
		return nil, fmt.Errorf("set %q is not a set name", p.Set)
	}
	if p.Prev != "" && !setName(p.Prev) {
		return nil, fmt.Errorf("prev %q is not a set name", p.Prev)
	}
	return &p, nil
}

// setName reports whether s is a name nextSetName gives: digits only.
func setName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	return strings.Trim(s, "0123456789") == ""
}

// markPending durably records that db is about to name set, replacing
// prev (nil on a first install).
func (s *Store) markPending(set, prev *Set, now time.Time) error {
	p := Pending{Set: set.Name, Time: now.UTC()}
	if prev != nil {
		p.Prev = prev.Name
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	// The marker must be on disk (WriteFile syncs the directory too) before
	// db's rename can be: a crash between the two must never leave an
	// unmarked, unconfirmed db.
	if err := fsutil.WriteFile(s.path(pendingFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record the set being switched to: %w", err)
	}
	return nil
}

// clearPending removes the marker. Its removal need not be durable: a
// marker that survives a crash names a set clamd loads, which the next
// start confirms again.
func (s *Store) clearPending() error {
	if err := os.Remove(s.path(pendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", s.path(pendingFile), err)
	}
	return nil
}

// Pending returns the unconfirmed switch db is in, or nil: no marker, or a
// marker from a switch that never happened or was already undone (db does
// not name its set). An unreadable marker counts as a switch to the set db
// names from the set prev names: checking a set clamd loads costs nothing,
// trusting one it cannot load leaves the node without a scanner.
func (s *Store) Pending() (*Pending, error) {
	b, err := os.ReadFile(s.path(pendingFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var p *Pending
	if err == nil {
		p, err = parsePending(b)
	}
	cur, cerr := s.Current()
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		if cur == nil {
			return nil, nil
		}
		p = &Pending{Set: cur.Name}
		if prev, perr := s.Previous(); perr == nil && prev != nil && prev.Name != cur.Name {
			p.Prev = prev.Name
		}
		return p, fmt.Errorf("read %s: %w (checking set %s as unconfirmed)", s.path(pendingFile), err, cur.Name)
	}
	if cur == nil || cur.Name != p.Set {
		return nil, nil
	}
	return p, nil
}

// Pending is the set db was switched to without clamd being seen to load
// it, or nil. The daemon calls it at start, before clamd runs; see
// ConfirmPending and RollBackPending.
func (u *Updater) Pending() (*Pending, error) { return u.o.Store.Pending() }

// ConfirmPending records that clamd loaded p's set (it started on it, or
// confirmed a reload).
func (u *Updater) ConfirmPending(ctx context.Context, p *Pending) error {
	unlock, err := u.o.Store.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if cur, _ := u.o.Store.Pending(); cur == nil || cur.Set != p.Set {
		return nil // another install came in between; it has its own marker
	}
	return u.o.Store.clearPending()
}

// RollBackPending points db back at p.Prev after clamd could not load p.Set
// (cause says how it failed), reports the failure like a failed update, and
// returns the set now installed. A set another install replaced meanwhile
// is left alone (nil, nil).
func (u *Updater) RollBackPending(ctx context.Context, p *Pending, cause error) (*Set, error) {
	unlock, err := u.o.Store.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now, _ := u.o.Store.Pending()
	if now == nil || now.Set != p.Set {
		return nil, nil
	}
	bad, err := u.o.Store.Current()
	if err != nil {
		return nil, err
	}
	if p.Prev == "" {
		return nil, fmt.Errorf("clamd could not load set %s (%s), and there is no previous set to go back to: %w",
			p.Set, FormatVersions(bad.Versions()), cause)
	}
	prev, err := u.o.Store.loadSet(p.Prev)
	if err != nil {
		return nil, fmt.Errorf("clamd could not load set %s, and the previous set cannot be put back: %w", p.Set, err)
	}
	if err := u.o.Store.Restore(prev); err != nil {
		return nil, fmt.Errorf("put back set %s: %w", prev.Name, err)
	}
	if err := u.o.Store.clearPending(); err != nil {
		u.log.Warn("clear the record of the unconfirmed set", "err", err)
	}
	end := u.o.Now()
	msg := oneLineN(fmt.Sprintf("clamd could not load set %s (%s), installed on %s without clamd confirming it: %v; put back the previous set %s (%s)",
		p.Set, FormatVersions(bad.Versions()), p.Time.UTC().Format(time.RFC3339), cause, prev.Name, FormatVersions(prev.Versions())), 2000)
	u.mu.Lock()
	u.installed = prev.Versions()
	u.defs = definitionsAge(prev)
	u.lastErr = msg
	ev := report.UpdateEvent{Time: end, Result: report.UpdateFailed, OldVersions: bad.Versions(), NewVersions: prev.Versions(),
		Error: msg, Stale: u.staleLocked(end).any()}
	u.mu.Unlock()
	u.o.Metrics.setInstalled(prev)
	u.o.Metrics.attempt(end, false, ReasonReload)
	u.emit(ctx, ev)
	return prev, nil
}

// confirms reports whether a successful Reload by r means clamd loaded the
// set: NoReload tells no clamd, so its "success" leaves the set pending.
func confirms(r Reloader) bool {
	_, none := r.(NoReload)
	return !none
}
