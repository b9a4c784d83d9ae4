// Package mirrorsink connects upstream sync to the mirror's store: it adapts
// *mirror.Store and its state.db to upstream.Sink and upstream.State. It
// lives apart from both so that neither imports the other's types (the
// mirror daemon starts upstream sync; upstream must not import the mirror).
package mirrorsink

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/mirror/upstream"
)

// Sink is upstream.Sink over a mirror store.
type Sink struct{ St *mirror.Store }

// State is upstream.State over the store's state.db.
type State struct{ St *mirror.State }

// New returns the sink and state of st, ready for upstream.Options.
func New(st *mirror.Store) (Sink, State) { return Sink{st}, State{st.State()} }

func (s Sink) PutIncoming(name string, r io.Reader) error { return s.St.PutIncoming(name, r) }

func (s Sink) RemoveIncoming(name string) error {
	if filepath.Base(name) != name || name == "." || name == ".." {
		return errors.New("remove from incoming: " + name + " is not a plain file name")
	}
	err := os.Remove(filepath.Join(s.St.IncomingDir(), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s Sink) Ingest(ctx context.Context, name, source string) (upstream.Ingested, error) {
	r, err := s.St.Ingest(ctx, name, source)
	if err != nil {
		return upstream.Ingested{}, err
	}
	return upstream.Ingested{Outcome: string(r.Outcome), Version: r.Version, Check: string(r.Check), Reason: r.Reason}, nil
}

func (s Sink) Held(db string) (upstream.Held, error) {
	h, err := s.St.Held(db)
	if err != nil {
		return upstream.Held{}, err
	}
	return upstream.Held{Version: h.Newest, BuildTime: h.NewestBuildTime}, nil
}

func (s State) SetSyncResult(r upstream.SyncResult) error {
	return s.St.SetSyncResult(mirror.SyncResult{Database: r.Database, CheckedAt: r.CheckedAt, Result: r.Result,
		Error: r.Error, UpstreamVersion: r.UpstreamVersion})
}

func (s State) Cooldown(scope string, now time.Time) (upstream.Cooldown, bool, error) {
	c, ok, err := s.St.Cooldown(scope, now)
	return upstream.Cooldown{Scope: c.Scope, Until: c.Until, Reason: c.Reason}, ok, err
}

func (s State) SetCooldown(c upstream.Cooldown) error {
	return s.St.SetCooldown(mirror.Cooldown{Scope: c.Scope, Until: c.Until, Reason: c.Reason})
}

var (
	_ upstream.Sink  = Sink{}
	_ upstream.State = State{}
)
