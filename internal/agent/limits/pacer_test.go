package limits

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// fakeWork is paced work on a fake clock: each item costs cost of CPU,
// spread over cost/cores of wall time.
type fakeWork struct {
	cpu   time.Duration
	cores int
}

func (w *fakeWork) do(cost time.Duration) {
	time.Sleep(cost / time.Duration(w.cores))
	w.cpu += cost
}

// TestPacerHoldsTheRate: whatever an item costs, work gated by Wait uses
// the given share of one core over a long run, on one core or two.
func TestPacerHoldsTheRate(t *testing.T) {
	for _, tc := range []struct {
		percent int
		cost    time.Duration
		cores   int
	}{
		{25, 2 * time.Millisecond, 2},   // many small files
		{25, 300 * time.Millisecond, 2}, // large ones: each overshoots, the next waits longer
		{10, 5 * time.Millisecond, 1},
		{150, 5 * time.Millisecond, 2},
	} {
		synctest.Test(t, func(t *testing.T) {
			w := &fakeWork{cores: tc.cores}
			p := newPacer(tc.percent, func() time.Duration { return w.cpu })
			start := time.Now()
			for time.Since(start) < 10*time.Minute {
				if err := p.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				w.do(tc.cost)
			}
			got := w.cpu.Seconds() / time.Since(start).Seconds() * 100
			want := float64(tc.percent)
			if got > want*1.03 || got < want*0.9 {
				t.Errorf("%d%%, items of %v on %d cores: used %.1f%% of one core", tc.percent, tc.cost, tc.cores, got)
			}
		})
	}
}

// TestPacerBurst: idle time before a scan is not saved up beyond one
// second's worth of budget.
func TestPacerBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWork{cores: 2}
		p := newPacer(20, func() time.Duration { return w.cpu })
		p.Wait(t.Context())
		time.Sleep(time.Hour)
		start := time.Now()
		for time.Since(start) < 2*time.Second {
			p.Wait(t.Context())
			w.do(10 * time.Millisecond)
		}
		// 2 s at 20% is 400 ms, plus a burst of at most 200 ms and one
		// item of overshoot.
		if w.cpu > 610*time.Millisecond {
			t.Errorf("after an idle hour, 2 s of work used %v of CPU", w.cpu)
		}
	})
}

// TestPacerCancel: a Wait that is sleeping off a debt ends with the
// context; a nil Pacer does not pace.
func TestPacerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cpu := time.Duration(0)
		p := newPacer(10, func() time.Duration { return cpu })
		p.Wait(t.Context())
		cpu += time.Minute    // ten minutes of debt at 10%
		time.Sleep(pacerRead) // Wait reads the CPU counters at most this often
		ctx, cancel := context.WithCancelCause(t.Context())
		stop := errors.New("scan cancelled")
		time.AfterFunc(3*time.Second, func() { cancel(stop) })
		start := time.Now()
		if err := p.Wait(ctx); !errors.Is(err, stop) {
			t.Fatalf("Wait: %v, want the context's cause", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("Wait returned after %v, want 3s (when cancelled)", d)
		}
	})
	var nilPacer *Pacer
	if err := nilPacer.Wait(context.Background()); err != nil {
		t.Errorf("nil Pacer: %v", err)
	}
}
