package updater

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
)

// Reloader makes clamd load the set that db now points to and says whether
// it did. sigs is the number of signatures clamd reports loading (-1 when the
// reloader cannot know).
type Reloader interface {
	Reload(ctx context.Context, want map[string]uint) (sigs int, err error)
}

// Restorer is a Reloader that needs more than another reload to go back to
// the previous set after a failed one: a managed clamd whose failed reload
// freed its engine (ConcurrentDatabaseReload no) must be restarted. The
// updater calls RestorePrevious after db points at the previous set again,
// with the error the failed Reload returned.
type Restorer interface {
	RestorePrevious(ctx context.Context, reloadErr error, want map[string]uint) error
}

// ReloaderFunc adapts a function (the managed clamd's Reload, which confirms
// by clamd's log line) to a Reloader.
type ReloaderFunc func(ctx context.Context) (int, error)

func (f ReloaderFunc) Reload(ctx context.Context, _ map[string]uint) (int, error) { return f(ctx) }

// NoReload installs without telling any clamd: for a first install before
// clamd starts, and for benchmarks of the update path alone.
type NoReload struct{}

func (NoReload) Reload(context.Context, map[string]uint) (int, error) { return -1, nil }

// SocketReloader reloads a clamd the agent does not run, through its socket.
// clamd answers RELOAD at once and loads in the background, and reports
// failure only in its own log, which the agent cannot read; so the
// confirmation is weaker than a managed clamd's: after RELOAD the agent waits
// until clamd answers VERSION again and, when the set has a database named
// daily, until VERSION names the new daily version (clamd 1.4's VERSION names
// no other database). A failed reload with no daily change goes unnoticed.
type SocketReloader struct {
	Client *clamd.Client
	// Timeout bounds the wait for the new daily version (a full daily takes
	// clamd tens of seconds to load); 0 means 3 minutes.
	Timeout time.Duration
}

// ErrReloadUnconfirmed is returned when clamd answered but never showed the
// new version within the timeout.
var ErrReloadUnconfirmed = errors.New("clamd did not confirm the new databases")

func (r SocketReloader) Reload(ctx context.Context, want map[string]uint) (int, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.Client.Reload(ctx); err != nil {
		return -1, fmt.Errorf("reload clamd at %s: %w", r.Client.Addr, err)
	}
	daily, hasDaily := want["daily"]
	var last string
	for {
		v, err := r.Client.Version(ctx)
		if err == nil {
			last = v.Raw
			if !hasDaily || uint(v.Daily) == daily {
				return -1, nil
			}
		}
		select {
		case <-ctx.Done():
			if last == "" {
				return -1, fmt.Errorf("reload clamd at %s: no answer to VERSION after RELOAD: %w", r.Client.Addr, ErrReloadUnconfirmed)
			}
			return -1, fmt.Errorf("reload clamd at %s: VERSION still says %q, want daily %d after %s: %w", r.Client.Addr, last, daily, timeout, ErrReloadUnconfirmed)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
