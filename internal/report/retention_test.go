package report

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

// TestRetention: a scan, a detection and an update every 10 days for 500
// days; keeping 400 days prunes the 10 of each older than that at once,
// then what the clock moving on makes old at the next rounds, and a failing
// prune is logged without stopping the part.
func TestRetention(t *testing.T) {
	h := openTestHistory(t)
	ctx := t.Context()
	start := time.Date(2025, 6, 30, 12, 0, 0, 0, time.UTC)
	for day := 0; day < 500; day += 10 {
		at := start.AddDate(0, 0, -day).Add(-time.Minute) // a minute older than N days
		id := "d" + strconv.Itoa(day)
		if err := h.InsertScan(ctx, ScanSummary{ScanID: id, Start: at.Add(-time.Hour), End: at}, Detection{ScanID: id, Time: at}); err != nil {
			t.Fatal(err)
		}
		if err := h.InsertUpdate(ctx, UpdateEvent{Time: at, Result: UpdateCurrent}); err != nil {
			t.Fatal(err)
		}
	}
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	var logs testutil.SyncBuffer
	r := Retention{History: h, Keep: 400 * 24 * time.Hour, Every: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return time.Unix(0, clock.Load()) }}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()

	counts := func() (scans, dets, updates int) {
		s, err := h.RecentScans(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		d, err := h.DetectionsSince(ctx, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		u, err := h.RecentUpdates(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(s), len(d), len(u)
	}
	waitFor := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, d, u := counts()
			if s == n && d == n && u == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d scans, %d detections, %d updates left, want %d of each", what, s, d, u, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Days 0..390 are within 400 days (each row is a minute older than its day).
	waitFor("first prune", 40)
	if !strings.Contains(logs.String(), "history pruned") || !strings.Contains(logs.String(), "scans=10 ") {
		t.Errorf("no log of the first prune:\n%s", logs.String())
	}
	clock.Add(int64(10 * 24 * time.Hour))
	waitFor("prune 10 days later", 39)
	scans, _ := h.RecentScans(ctx, 0)
	if oldest := scans[len(scans)-1].ScanID; oldest != "d380" {
		t.Errorf("oldest scan left %s, want d380", oldest)
	}

	// A history that cannot be written: a warning each round, Run goes on.
	h.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "prune the history; retrying at the next round") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for a failing prune:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after a failed prune", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
