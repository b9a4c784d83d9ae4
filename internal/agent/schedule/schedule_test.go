package schedule

import (
	"fmt"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
)

func mustNew(t *testing.T, c config.Schedule, node string) Schedule {
	t.Helper()
	s, err := New(c, node, time.UTC)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	return s
}

func TestDailyWindow(t *testing.T) {
	for _, w := range []struct{ earliest, latest string }{
		{"01:00", "05:00"},
		{"22:00", "02:00"}, // wraps past midnight
		{"03:00", "03:00"}, // the whole day
	} {
		t.Run(w.earliest+"-"+w.latest, func(t *testing.T) {
			e, _ := clock(w.earliest)
			l, _ := clock(w.latest)
			length := l - e
			if length <= 0 {
				length += 24 * time.Hour
			}
			offsets := map[time.Duration]bool{}
			for i := range 50 {
				node := fmt.Sprintf("node-%02d", i)
				s := mustNew(t, config.Schedule{Interval: "daily", Earliest: w.earliest, Latest: w.latest}, node)
				if s.Offset() < 0 || s.Offset() >= length {
					t.Fatalf("%s: offset %s outside the %s window", node, s.Offset(), length)
				}
				if again := mustNew(t, config.Schedule{Interval: "daily", Earliest: w.earliest, Latest: w.latest}, node); again.Offset() != s.Offset() {
					t.Fatalf("%s: offset not deterministic: %s then %s", node, s.Offset(), again.Offset())
				}
				offsets[s.Offset()] = true
				// Walk 10 days: one start per day, each at the window's opening plus the offset.
				at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
				for d := range 10 {
					n := s.Next(at)
					open := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(e)
					if n.Sub(open.Add(s.Offset()))%(24*time.Hour) != 0 {
						t.Fatalf("%s day %d: start %s is not at the node's point %s after %s", node, d, n, s.Offset(), w.earliest)
					}
					if d > 0 && n.Sub(at) > 24*time.Hour {
						t.Fatalf("%s: %s after a start, the next is %s", node, at, n)
					}
					if !s.InWindow(n) {
						t.Fatalf("%s: start %s is outside the window", node, n)
					}
					at = n
				}
			}
			if len(offsets) < 45 {
				t.Errorf("50 nodes got only %d distinct start points", len(offsets))
			}
		})
	}
}

func TestHourly(t *testing.T) {
	s := mustNew(t, config.Schedule{Interval: "hourly", Earliest: "08:00", Latest: "12:00"}, "web-1")
	if s.Offset() >= time.Hour {
		t.Fatalf("hourly offset %s is not within an hour", s.Offset())
	}
	day := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	var starts []time.Time
	for at := day; ; {
		at = s.Next(at)
		if at.After(day.Add(24 * time.Hour)) {
			break
		}
		starts = append(starts, at)
	}
	if len(starts) != 4 {
		t.Fatalf("hourly 08:00-12:00 gave %d starts in a day (%v), want 4", len(starts), starts)
	}
	for i, st := range starts {
		if want := day.Add(8*time.Hour + time.Duration(i)*time.Hour + s.Offset()); !st.Equal(want) {
			t.Errorf("start %d = %s, want %s", i, st, want)
		}
	}
	all := mustNew(t, config.Schedule{Interval: "hourly", Earliest: "00:00", Latest: "00:00"}, "web-1")
	n := 0
	for at := day; at.Before(day.Add(24 * time.Hour)); n++ {
		at = all.Next(at)
	}
	if n != 25 { // 24 starts inside the day, the loop ends on the next day's first
		t.Errorf("hourly all day: %d starts, want 24", n-1)
	}
}

func TestDisabledAndCron(t *testing.T) {
	d := mustNew(t, config.Schedule{Interval: "disabled"}, "n")
	if !d.Next(time.Now()).IsZero() || d.InWindow(time.Now()) {
		t.Error("a disabled schedule starts")
	}
	c := mustNew(t, config.Schedule{Interval: "daily", Earliest: "01:00", Latest: "05:00", Cron: "15 3 * * *"}, "n")
	if c.Kind() != CronKind {
		t.Fatalf("cron set: kind %s", c.Kind())
	}
	got := c.Next(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2024, 1, 2, 3, 15, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("cron next = %s, want %s", got, want)
	}
	if _, err := New(config.Schedule{Cron: "0 25 * * *"}, "n", nil); err == nil {
		t.Error("bad cron accepted")
	}
	if _, err := New(config.Schedule{Interval: "weekly"}, "n", nil); err == nil {
		t.Error("weekly accepted")
	}
}
