package schedule

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/avfleet/avfleet/internal/config"
)

// Kind is how a Schedule picks its start times.
type Kind string

const (
	Disabled Kind = "disabled"
	Hourly   Kind = "hourly"
	Daily    Kind = "daily"
	CronKind Kind = "cron"
)

// Schedule is when scheduled scans start. The zero value never starts.
type Schedule struct {
	kind Kind
	loc  *time.Location
	// The window runs from earliest for length (wrapping past midnight); a
	// window whose earliest equals its latest is the whole day.
	earliest, length time.Duration
	offset           time.Duration // this node's point: daily in the window, hourly in each hour of it
	cron             *Cron
}

// New builds the Schedule of agent.yaml's scan.schedule for node, in loc
// (time.Local when nil). Window times are wall-clock times in loc.
func New(c config.Schedule, node string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.Local
	}
	if c.Cron != "" {
		cr, err := ParseCron(c.Cron)
		if err != nil {
			return Schedule{}, fmt.Errorf("scan.schedule.cron: %w", err)
		}
		return Schedule{kind: CronKind, loc: loc, cron: cr}, nil
	}
	k := Kind(c.Interval)
	switch k {
	case Disabled:
		return Schedule{kind: Disabled, loc: loc}, nil
	case Hourly, Daily:
	default:
		return Schedule{}, fmt.Errorf("scan.schedule.interval: %q is not hourly, daily or disabled", c.Interval)
	}
	e, err := clock(c.Earliest)
	if err != nil {
		return Schedule{}, fmt.Errorf("scan.schedule.earliest: %w", err)
	}
	l, err := clock(c.Latest)
	if err != nil {
		return Schedule{}, fmt.Errorf("scan.schedule.latest: %w", err)
	}
	length := l - e
	if length <= 0 {
		length += 24 * time.Hour
	}
	span := length
	if k == Hourly {
		span = min(length, time.Hour)
	}
	return Schedule{kind: k, loc: loc, earliest: e, length: length, offset: NodeOffset(node, span)}, nil
}

// NodeOffset is node's fixed point in a span: the same node always gets the
// same offset, different nodes spread evenly, to the second.
func NodeOffset(node string, span time.Duration) time.Duration {
	secs := int64(span / time.Second)
	if secs <= 0 {
		return 0
	}
	h := sha256.Sum256([]byte("avfleet-schedule\x00" + node))
	return time.Duration(binary.BigEndian.Uint64(h[:8])%uint64(secs)) * time.Second
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Kind says which kind of schedule this is.
func (s Schedule) Kind() Kind {
	if s.kind == "" {
		return Disabled
	}
	return s.kind
}

// Offset is this node's point in the window (daily) or in each hour of it (hourly).
func (s Schedule) Offset() time.Duration { return s.offset }

func (s Schedule) String() string {
	switch s.Kind() {
	case CronKind:
		return "cron " + s.cron.String()
	case Hourly, Daily:
		e := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(s.earliest)
		return fmt.Sprintf("%s in %s+%s, this node at +%s", s.kind, e.Format("15:04"), s.length, s.offset)
	}
	return "disabled"
}

// Next is the first start strictly after `after`, or the zero time when the
// schedule never starts.
func (s Schedule) Next(after time.Time) time.Time {
	after = after.In(s.loc)
	switch s.Kind() {
	case CronKind:
		return s.cron.Next(after)
	case Daily, Hourly:
		// A window opening the day before may still hold starts after `after`.
		y, m, d := after.Date()
		for i := -1; i <= 1; i++ {
			open := time.Date(y, m, d+i, 0, 0, 0, 0, s.loc).Add(s.earliest)
			if t := s.firstIn(open, after); !t.IsZero() {
				return t
			}
		}
	}
	return time.Time{}
}

// firstIn is the first start of the window opening at open that is after `after`.
func (s Schedule) firstIn(open, after time.Time) time.Time {
	if s.kind == Daily {
		if t := open.Add(s.offset); t.After(after) {
			return t
		}
		return time.Time{}
	}
	for k := time.Duration(0); k < s.length; k += time.Hour {
		if k+s.offset >= s.length {
			break
		}
		if t := open.Add(k + s.offset); t.After(after) {
			return t
		}
	}
	return time.Time{}
}

// InWindow reports whether a run that was missed may be made up at t: inside
// the start window for hourly and daily, always for cron, never when disabled.
func (s Schedule) InWindow(t time.Time) bool {
	switch s.Kind() {
	case CronKind:
		return true
	case Daily, Hourly:
		t = t.In(s.loc)
		y, m, d := t.Date()
		for i := -1; i <= 0; i++ {
			open := time.Date(y, m, d+i, 0, 0, 0, 0, s.loc).Add(s.earliest)
			if !t.Before(open) && t.Before(open.Add(s.length)) {
				return true
			}
		}
	}
	return false
}
