package limits

import (
	"context"
	"sync"
	"time"
)

// Pacer holds scan work to limits.cpu_percent where no cgroup can: before
// each file it hands clamd, the scanner calls Wait, which sleeps while the
// CPU time its processes (clamd and the agent) have used is ahead of the
// budget. It is the read-rate limiter of DESIGN section 5: clamd reads, and
// spends CPU on, only the files it is given, and the rate they are given at
// follows the CPU they cost, whatever their sizes and types.
//
// The budget is a token bucket of CPU time: it fills at CPUPercent% of one
// core per second of wall time, holds at most one second's worth (so idle
// hours between scans do not become a burst), and each Wait takes out the
// CPU time used since the last one. clamd spends the CPU for a file after
// it is handed over, so the bucket is charged late, by at most the files in
// flight; over a scan the average holds.
type Pacer struct {
	mu    sync.Mutex           // one Wait at a time: scan workers take turns
	rate  float64              // CPU seconds per wall second
	burst time.Duration        // the bucket's size, in CPU time
	cpu   func() time.Duration // CPU used by the paced processes so far

	last    time.Time     // when the bucket was last filled; zero before the first Wait
	lastCPU time.Duration // cpu() then
	tokens  time.Duration // CPU time that may still be used now
}

// pacerRead is how often Wait looks at the CPU counters while there is
// credit: reading /proc for every small file would cost more than the
// pacing saves.
const pacerRead = 20 * time.Millisecond

func newPacer(percent int, cpu func() time.Duration) *Pacer {
	rate := float64(percent) / 100
	return &Pacer{
		rate:  rate,
		burst: time.Duration(rate * float64(time.Second)),
		cpu:   cpu,
	}
}

// Wait returns when the paced processes may use more CPU, or with ctx's
// error when it ends first.
func (p *Pacer) Wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.last.IsZero() {
		p.last, p.lastCPU, p.tokens = now, p.cpu(), p.burst
		return ctx.Err()
	}
	if p.tokens > 0 && now.Sub(p.last) < pacerRead {
		return ctx.Err()
	}
	for {
		used := p.cpu()
		p.tokens += time.Duration(p.rate*float64(now.Sub(p.last))) - (used - p.lastCPU)
		p.tokens = min(p.tokens, p.burst)
		p.last, p.lastCPU = now, used
		if p.tokens > 0 {
			return ctx.Err()
		}
		// Sleep until the debt is paid at rate, then look again: the
		// processes may still be using CPU for work already handed over.
		d := time.Duration(float64(-p.tokens)/p.rate) + time.Millisecond
		if err := sleepCtx(ctx, min(d, time.Second)); err != nil {
			return err
		}
		now = time.Now()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
