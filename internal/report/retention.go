package report

import (
	"context"
	"log/slog"
	"time"
)

// Retention keeps a History from growing without end (report.history_days):
// Run prunes what is older than Keep at once, then every Every.
type Retention struct {
	History *History
	Keep    time.Duration
	// Every is the time between prunes; 0 means once a day. Pruning a day's
	// rows at a time keeps each delete transaction small.
	Every  time.Duration
	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
}

// Run is the daemon part. A failed prune is logged and retried at the next
// round: history that is kept too long is no reason to stop the agent.
func (r Retention) Run(ctx context.Context) error {
	every := r.Every
	if every <= 0 {
		every = 24 * time.Hour
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := r.Now
	if now == nil {
		now = time.Now
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cutoff := now().Add(-r.Keep)
		p, err := r.History.Prune(ctx, cutoff)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("prune the history; retrying at the next round", "err", err, "in", every.String())
		case p != Pruned{}:
			log.Info("history pruned", "before", cutoff.UTC().Format(time.RFC3339), "scans", p.Scans, "detections", p.Detections, "updates", p.Updates)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
