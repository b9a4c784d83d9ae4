package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Sink receives every event the Reporter handles. Syslog, History and
// ScanMetrics are sinks; the agent adds its own (the report to the mirror).
// A sink must not block for long: the scanner waits for Report to return.
type Sink interface {
	Report(ctx context.Context, ev Event) error
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(ctx context.Context, ev Event) error

func (f SinkFunc) Report(ctx context.Context, ev Event) error { return f(ctx, ev) }

// Reporter writes each event as one structured log line (JSON with
// --log-format json) and passes it to its sinks in order.
type Reporter struct {
	log   *slog.Logger
	node  string
	sinks []Sink
	now   func() time.Time
}

// NewReporter returns a Reporter logging to log. node fills in events that
// name none; a nil sink is ignored so optional parts can be passed as is.
func NewReporter(log *slog.Logger, node string, sinks ...Sink) *Reporter {
	r := &Reporter{log: log, node: node, now: time.Now}
	for _, s := range sinks {
		if s != nil {
			r.sinks = append(r.sinks, s)
		}
	}
	return r
}

// Report normalises ev (node, time in UTC, defaults), logs it and hands it to
// every sink. A sink's failure is logged and returned but does not stop the
// other sinks; callers may ignore the error, it has been logged.
func (r *Reporter) Report(ctx context.Context, ev Event) error {
	ev = r.normalize(ev)
	r.logEvent(ctx, ev)
	var errs []error
	for _, s := range r.sinks {
		if err := s.Report(ctx, ev); err != nil {
			err = fmt.Errorf("report %s to %T: %w", ev.Kind(), s, err)
			r.log.Warn("report sink failed", "event", string(ev.Kind()), "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Reporter) normalize(ev Event) Event {
	now := r.now().UTC()
	utc := func(t time.Time) time.Time {
		if t.IsZero() {
			return now
		}
		return t.UTC()
	}
	switch e := ev.(type) {
	case Detection:
		e.Time = utc(e.Time)
		e.Node = r.or(e.Node)
		if e.Action == "" {
			e.Action = ActionNotify
		}
		if e.ActionResult == "" {
			e.ActionResult = ActionOK
		}
		return e
	case ScanSummary:
		e.End = utc(e.End)
		if e.Start.IsZero() {
			e.Start = e.End.Add(-e.Duration)
		}
		e.Start = e.Start.UTC()
		if e.Duration == 0 {
			e.Duration = e.End.Sub(e.Start)
		}
		e.Node = r.or(e.Node)
		return e
	case UpdateEvent:
		e.Time = utc(e.Time)
		e.Node = r.or(e.Node)
		return e
	case Alert:
		e.Time = utc(e.Time)
		e.Node = r.or(e.Node)
		if e.State == "" {
			e.State = AlertFiring
		}
		return e
	}
	return ev
}

func (r *Reporter) or(node string) string {
	if node == "" {
		return r.node
	}
	return node
}

// logEvent writes the line with the event's own time as the record time, so
// "time" in the JSON line is when it happened, and the event's fields as
// top-level keys with their JSON names.
func (r *Reporter) logEvent(ctx context.Context, ev Event) {
	level := ev.severity().slogLevel()
	h := r.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(ev.eventTime(), level, ev.logMessage(), 0)
	rec.AddAttrs(slog.String("event", string(ev.Kind())))
	for _, f := range ev.fields() {
		if f.name == "time" {
			continue // the record's own time
		}
		rec.AddAttrs(slog.Attr{Key: f.name, Value: f.v})
	}
	// A failing log handler has nowhere better to report to.
	_ = h.Handle(ctx, rec)
}
