package schedule

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Triggers, as the scan summary records them.
const (
	TriggerSchedule = "schedule"
	TriggerOnDemand = "on-demand"
)

// ErrBusy is returned by RunNow while a run is in progress.
var ErrBusy = errors.New("a scan is already running")

// Job is one run: a scan, told why it runs.
type Job func(ctx context.Context, trigger string) error

// DefaultRetryAfter is how long after a failed scheduled run it is tried again
// (if the window is still open then).
const DefaultRetryAfter = 15 * time.Minute

// maxSleep bounds each wait, so that a wall clock that jumps (suspend,
// NTP step) delays a start by at most this much.
const maxSleep = time.Minute

// Runner runs Job on Schedule, never two runs at once.
type Runner struct {
	Schedule Schedule
	State    State        // nil: in memory
	Job      Job          // required
	Logger   *slog.Logger // nil: discard
	// RetryAfter: after a failed scheduled run, try again this much later if
	// the schedule allows a start then (inside the window). 0 means
	// DefaultRetryAfter, negative never.
	RetryAfter time.Duration

	running sync.Mutex
	once    sync.Once
}

func (r *Runner) init() {
	r.once.Do(func() {
		if r.State == nil {
			r.State = &MemState{}
		}
		if r.Logger == nil {
			r.Logger = slog.New(slog.DiscardHandler)
		}
		if r.RetryAfter == 0 {
			r.RetryAfter = DefaultRetryAfter
		}
	})
}

// Busy reports whether a run is in progress.
func (r *Runner) Busy() bool {
	if r.running.TryLock() {
		r.running.Unlock()
		return false
	}
	return true
}

// RunNow runs the job at once with trigger on-demand and returns its error,
// or ErrBusy without running it when a run is in progress.
func (r *Runner) RunNow(ctx context.Context) error {
	r.init()
	return r.run(ctx, TriggerOnDemand)
}

func (r *Runner) run(ctx context.Context, trigger string) error {
	if !r.running.TryLock() {
		return ErrBusy
	}
	defer r.running.Unlock()
	return r.Job(ctx, trigger)
}

// Run starts the job at every start of the schedule until ctx is done, and
// returns nil then. A start that comes while a run is still going is skipped.
// A scheduled run missed while the agent was down (the schedule named a start
// after the last completed run, and that start has passed) runs at once if the
// schedule's window is open now, else at the next start.
func (r *Runner) Run(ctx context.Context) error {
	r.init()
	s := r.Schedule
	if s.Kind() == Disabled {
		r.Logger.Info("scheduled scans are disabled")
		<-ctx.Done()
		return nil
	}
	now := time.Now()
	last, err := r.State.LastRun()
	if err != nil {
		r.Logger.Warn("schedule state unreadable; missed runs cannot be made up", "err", err)
	}
	next := s.Next(now)
	if due := nextAfter(s, last); !due.IsZero() && !due.After(now) {
		if s.InWindow(now) {
			r.Logger.Info("scheduled scan missed while the agent was down; running it now", "last_run", last, "missed", due)
			next = now
		} else {
			r.Logger.Info("scheduled scan missed while the agent was down; it runs at the next start", "last_run", last, "missed", due, "next", next)
		}
	}
	r.Logger.Info("scan schedule", "schedule", s.String(), "next", next)
	for {
		if next.IsZero() {
			r.Logger.Warn("the scan schedule names no further start", "schedule", s.String())
			<-ctx.Done()
			return nil
		}
		if !sleepUntil(ctx, next) {
			return nil
		}
		start := time.Now()
		err := r.run(ctx, TriggerSchedule)
		end := time.Now()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrBusy):
			r.Logger.Warn("scheduled scan skipped: a scan is still running", "start", next)
			next = s.Next(end)
		case err != nil:
			next = s.Next(end)
			if retry := end.Add(r.RetryAfter); r.RetryAfter > 0 && s.InWindow(retry) && retry.Before(next) {
				next = retry
			}
			r.Logger.Error("scheduled scan failed", "err", err, "next", next)
		default:
			if err := r.State.SetLastRun(start); err != nil {
				r.Logger.Warn("could not record the scheduled scan", "err", err)
			}
			next = s.Next(end)
			if missed := s.Next(start); missed.Before(end) {
				r.Logger.Warn("scheduled starts skipped while the scan ran", "first", missed, "scan_took", end.Sub(start))
			}
		}
		r.Logger.Info("next scheduled scan", "next", next)
	}
}

// nextAfter is s.Next(last), or zero when there was no last run.
func nextAfter(s Schedule, last time.Time) time.Time {
	if last.IsZero() {
		return time.Time{}
	}
	return s.Next(last)
}

// sleepUntil waits until t (in steps of at most maxSleep, re-reading the
// wall clock) and reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		tm := time.NewTimer(min(d, maxSleep))
		select {
		case <-ctx.Done():
			tm.Stop()
			return false
		case <-tm.C:
		}
	}
}
