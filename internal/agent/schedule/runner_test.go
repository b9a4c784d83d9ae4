package schedule

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/avfleet/avfleet/internal/config"
)

// recorder is a Job that records when and why it ran, and can take time.
type recorder struct {
	mu       sync.Mutex
	starts   []time.Time
	triggers []string
	took     time.Duration
	fail     int // fail this many runs first
	active   atomic.Int32
	overlap  atomic.Bool
}

func (r *recorder) job(ctx context.Context, trigger string) error {
	if r.active.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.active.Add(-1)
	r.mu.Lock()
	r.starts = append(r.starts, time.Now())
	r.triggers = append(r.triggers, trigger)
	fail := r.fail > 0
	r.fail--
	r.mu.Unlock()
	if r.took > 0 {
		select {
		case <-time.After(r.took):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New("clamd is down")
	}
	return nil
}

func (r *recorder) get() ([]time.Time, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.starts...), append([]string(nil), r.triggers...)
}

// startRunner runs r in the bubble and returns a function that stops it.
func startRunner(t *testing.T, r *Runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestRunnerDaily(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := mustNew(t, config.Schedule{Interval: "daily", Earliest: "01:00", Latest: "05:00"}, "db-7")
		rec := &recorder{took: 20 * time.Minute}
		st := &MemState{}
		r := &Runner{Schedule: s, State: st, Job: rec.job}
		t0 := time.Now()
		stop := startRunner(t, r)
		time.Sleep(3*24*time.Hour + time.Hour)
		stop()
		starts, trig := rec.get()
		if len(starts) != 3 {
			t.Fatalf("3 days gave %d runs: %v", len(starts), starts)
		}
		for i, st := range starts {
			want := t0.Truncate(24 * time.Hour).Add(time.Duration(i)*24*time.Hour + time.Hour + s.Offset())
			if !st.Equal(want) || trig[i] != TriggerSchedule {
				t.Errorf("run %d at %s (%s), want %s (schedule)", i, st, trig[i], want)
			}
		}
		if last, _ := st.LastRun(); !last.Equal(starts[2]) {
			t.Errorf("last run recorded %s, want %s", last, starts[2])
		}
	})
}

func TestRunnerNoOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := mustNew(t, config.Schedule{Interval: "hourly", Earliest: "00:00", Latest: "00:00"}, "busy")
		rec := &recorder{took: 150 * time.Minute}
		r := &Runner{Schedule: s, Job: rec.job}
		stop := startRunner(t, r)
		first := s.Next(time.Now())
		time.Sleep(time.Until(first) + time.Minute)
		if !r.Busy() {
			t.Fatal("not busy during a run")
		}
		if err := r.RunNow(context.Background()); !errors.Is(err, ErrBusy) {
			t.Fatalf("RunNow during a scheduled run = %v, want ErrBusy", err)
		}
		time.Sleep(10 * time.Hour)
		stop()
		starts, _ := rec.get()
		if rec.overlap.Load() {
			t.Fatal("two runs overlapped")
		}
		// Each 150-minute run swallows two hourly starts: runs are 3 h apart.
		if len(starts) < 3 {
			t.Fatalf("got %d runs", len(starts))
		}
		for i := 1; i < len(starts); i++ {
			if d := starts[i].Sub(starts[i-1]); d != 3*time.Hour {
				t.Errorf("runs %d and %d are %s apart, want 3h", i-1, i, d)
			}
		}
	})
}

func TestRunnerOnDemandBlocksSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := mustNew(t, config.Schedule{Interval: "hourly", Earliest: "00:00", Latest: "00:00"}, "n")
		rec := &recorder{took: 90 * time.Minute}
		r := &Runner{Schedule: s, Job: rec.job}
		stop := startRunner(t, r)
		// Start an on-demand run a minute before the first scheduled start.
		time.Sleep(time.Until(s.Next(time.Now())) - time.Minute)
		go r.RunNow(context.Background())
		time.Sleep(4 * time.Hour)
		stop()
		starts, trig := rec.get()
		if rec.overlap.Load() {
			t.Fatal("a scheduled run started during an on-demand run")
		}
		if len(trig) < 2 || trig[0] != TriggerOnDemand || trig[1] != TriggerSchedule {
			t.Fatalf("triggers %v", trig)
		}
		// The on-demand run covers the next start; the schedule resumes at the one after.
		if want := s.Next(starts[0].Add(90 * time.Minute)); !starts[1].Equal(want) {
			t.Errorf("first scheduled run at %s, want %s", starts[1], want)
		}
	})
}

func TestRunnerCatchUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		window  [2]string
		startAt func(s Schedule, day time.Time) time.Time // when the agent comes up
		runsNow bool
	}{
		{"agent up inside the window after the node's point", [2]string{"00:00", "12:00"},
			func(s Schedule, day time.Time) time.Time { return day.Add(s.Offset() + time.Second) }, true},
		{"agent up outside the window", [2]string{"01:00", "05:00"},
			func(s Schedule, day time.Time) time.Time { return day.Add(13 * time.Hour) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := mustNew(t, config.Schedule{Interval: "daily", Earliest: tc.window[0], Latest: tc.window[1]}, "late-node")
				day := time.Now().Truncate(24 * time.Hour).Add(24 * time.Hour)
				up := tc.startAt(s, day)
				time.Sleep(time.Until(up))
				// The last completed run was two days before: yesterday's was missed.
				st := &MemState{}
				st.SetLastRun(s.Next(day.Add(-3 * 24 * time.Hour)))
				rec := &recorder{}
				stop := startRunner(t, &Runner{Schedule: s, State: st, Job: rec.job})
				time.Sleep(48 * time.Hour)
				stop()
				starts, _ := rec.get()
				if len(starts) == 0 {
					t.Fatal("no run")
				}
				want := s.Next(up)
				if tc.runsNow {
					want = up
				}
				if !starts[0].Equal(want) {
					t.Errorf("first run at %s, want %s (agent up at %s)", starts[0], want, up)
				}
			})
		})
	}
	// Not missed: the agent restarts after today's run; nothing runs until tomorrow.
	synctest.Test(t, func(t *testing.T) {
		s := mustNew(t, config.Schedule{Interval: "daily", Earliest: "00:00", Latest: "12:00"}, "late-node")
		today := s.Next(time.Now())
		time.Sleep(time.Until(today) + time.Minute)
		st := &MemState{}
		st.SetLastRun(today)
		rec := &recorder{}
		stop := startRunner(t, &Runner{Schedule: s, State: st, Job: rec.job})
		time.Sleep(time.Hour)
		stop()
		if starts, _ := rec.get(); len(starts) != 0 {
			t.Errorf("a run already done today ran again at %v", starts)
		}
	})
}

func TestRunnerRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := mustNew(t, config.Schedule{Interval: "daily", Earliest: "00:00", Latest: "12:00"}, "retry")
		rec := &recorder{fail: 1}
		st := &MemState{}
		stop := startRunner(t, &Runner{Schedule: s, State: st, Job: rec.job, RetryAfter: 15 * time.Minute})
		first := s.Next(time.Now())
		time.Sleep(time.Until(first) + time.Hour)
		stop()
		starts, _ := rec.get()
		wantRetry := first.Add(15 * time.Minute)
		if !s.InWindow(wantRetry) {
			t.Fatalf("test setup: node's point %s leaves no room for a retry in the window", s.Offset())
		}
		if len(starts) != 2 || !starts[1].Equal(wantRetry) {
			t.Fatalf("runs %v, want %s then %s", starts, first, wantRetry)
		}
		if last, _ := st.LastRun(); !last.Equal(wantRetry) {
			t.Errorf("last run %s, want the successful retry %s", last, wantRetry)
		}
	})
}

func TestFileState(t *testing.T) {
	p := filepath.Join(t.TempDir(), "schedule.json")
	f := FileState{Path: p}
	if v, err := f.LastRun(); err != nil || !v.IsZero() {
		t.Fatalf("missing file: %v %v", v, err)
	}
	now := time.Now().Truncate(time.Second)
	if err := f.SetLastRun(now); err != nil {
		t.Fatal(err)
	}
	if v, err := (FileState{Path: p}).LastRun(); err != nil || !v.Equal(now) {
		t.Fatalf("read back %v %v, want %v", v, err, now)
	}
}
