package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/report"
)

type fakePoster struct {
	mu   sync.Mutex
	fail bool
	got  []NodeReport
}

func (f *fakePoster) PostReport(_ context.Context, _ string, body any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("HTTP 500")
	}
	f.got = append(f.got, body.(NodeReport))
	return nil
}

func (f *fakePoster) URL() string { return "https://mirror" }

func (f *fakePoster) reports() []NodeReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]NodeReport(nil), f.got...)
}

// TestNodeReporter: detections wait for the next report (at most 1,000, the
// newest kept), survive a failed send, and each update or scan sends one.
func TestNodeReporter(t *testing.T) {
	p := &fakePoster{fail: true}
	last := time.Date(2026, 11, 26, 5, 40, 0, 0, time.UTC)
	r := newNodeReporter("web-1", []poster{p}, func() (map[string]uint, time.Time, string) {
		return map[string]uint{"daily": 27480}, last, ""
	}, func(context.Context) string { return "ClamAV 1.4.6" }, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for i := range maxReportDetections + 5 {
		r.Report(ctx, report.Detection{Time: last.Add(time.Duration(i) * time.Second), Path: "/srv/x", Signature: "Eicar-Test-Signature", Action: "notify"})
	}
	r.Report(ctx, report.ScanSummary{Start: last, End: last.Add(time.Minute), Files: 10, Detections: 1005, Result: report.ResultInfected})
	if err := r.send(ctx); err == nil {
		t.Fatal("send to a failing mirror succeeded")
	}
	p.fail = false
	if err := r.send(ctx); err != nil {
		t.Fatal(err)
	}
	got := p.reports()
	if len(got) != 1 {
		t.Fatalf("%d reports", len(got))
	}
	rep := got[0]
	if len(rep.Detections) != maxReportDetections {
		t.Errorf("%d detections, want the newest %d", len(rep.Detections), maxReportDetections)
	}
	if first := rep.Detections[0].Time; first == nil || !first.Equal(last.Add(5*time.Second)) {
		t.Errorf("oldest detection kept is %s: the oldest should be dropped", first)
	}
	if rep.LastScan == nil || rep.LastScan.Infected != 1005 || rep.LastScan.Status != "ok" {
		t.Errorf("last_scan %+v", rep.LastScan)
	}
	if rep.Node != "web-1" || rep.Databases["daily"] != 27480 || rep.ClamdVersion != "ClamAV 1.4.6" || !rep.LastUpdate.Equal(last) {
		t.Errorf("report %+v", rep)
	}
	// Sent detections are not sent again.
	if err := r.send(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.reports(); len(got[1].Detections) != 0 {
		t.Errorf("%d detections sent twice", len(got[1].Detections))
	}

	// Run: an update event leads to a report.
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	r.Report(ctx, report.UpdateEvent{Result: report.UpdateUpdated})
	deadline := time.Now().Add(5 * time.Second)
	for len(p.reports()) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no report after an update event")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
