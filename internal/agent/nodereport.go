package agent

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/report"
	"github.com/avfleet/avfleet/internal/version"
)

// The report's types are the mirror API's own (internal/mirror/api, which
// depends only on the standard library), so agent and mirror cannot drift.
type (
	NodeReport      = api.Report      // POST /api/v1/nodes/{node}/report
	LastScan        = api.ScanSummary // the last finished scan
	ReportDetection = api.Detection   // one detection
)

// maxReportDetections is the API's limit per report; older ones stay in the
// node's SQLite history.
const maxReportDetections = 1000

// poster sends a report; *updater.Client is one (one per mirror URL).
type poster interface {
	PostReport(ctx context.Context, node string, body any) error
	URL() string
}

// nodeStatus gives what the report says about definitions.
type nodeStatus func() (installed map[string]uint, lastOK time.Time, lastErr string)

// NodeReporter is a report.Sink that keeps the node's state from the events
// it sees (updates, scans, detections) and sends it to the mirror after every
// update and scan. Sending happens in Run, never in the caller of Report, so
// a slow or absent mirror never holds up an update or a scan; a failed send
// is retried with backoff and the newest state wins.
type NodeReporter struct {
	node    string
	mirrors []poster
	status  nodeStatus
	clamdV  func(ctx context.Context) string
	log     *slog.Logger

	mu       sync.Mutex
	lastScan *LastScan
	pending  []ReportDetection
	scanErr  string
	dirty    chan struct{}
	sent     int // successful posts, for tests
}

func newNodeReporter(node string, mirrors []poster, status nodeStatus, clamdVersion func(context.Context) string, log *slog.Logger) *NodeReporter {
	return &NodeReporter{node: node, mirrors: mirrors, status: status, clamdV: clamdVersion, log: log, dirty: make(chan struct{}, 1)}
}

// Report records ev and, for updates and scan summaries, schedules a send.
func (r *NodeReporter) Report(_ context.Context, ev report.Event) error {
	r.mu.Lock()
	send := false
	switch e := ev.(type) {
	case report.UpdateEvent:
		send = true
	case report.ScanSummary:
		st := "ok"
		if e.Result == report.ResultError {
			st = "failed"
		}
		r.lastScan = &LastScan{StartedAt: utcPtr(e.Start), FinishedAt: utcPtr(e.End), Files: e.Files, Bytes: e.Bytes,
			Infected: e.Detections, Errors: e.Errors, Status: st}
		r.scanErr = e.Error
		send = true
	case report.Detection:
		if len(r.pending) >= maxReportDetections {
			r.pending = r.pending[1:]
		}
		r.pending = append(r.pending, ReportDetection{Time: utcPtr(e.Time), Path: detectionPath(e), Container: e.Container,
			Signature: e.Signature, Action: e.Action})
	}
	r.mu.Unlock()
	if send {
		r.kick()
	}
	return nil
}

func utcPtr(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}

func detectionPath(d report.Detection) string {
	if d.Container != "" && d.ContainerPath != "" {
		return d.ContainerPath
	}
	return d.Path
}

func (r *NodeReporter) kick() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// build makes the report from the current state and takes the pending
// detections; restore puts them back if the send fails.
func (r *NodeReporter) build(ctx context.Context) (NodeReport, []ReportDetection) {
	installed, lastOK, lastErr := r.status()
	rep := NodeReport{Node: r.node, AgentVersion: version.Version, Databases: installed, LastError: lastErr}
	if rep.Databases == nil {
		rep.Databases = map[string]uint{}
	}
	if !lastOK.IsZero() {
		t := lastOK.UTC()
		rep.LastUpdate = &t
	}
	if r.clamdV != nil {
		rep.ClamdVersion = r.clamdV(ctx)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastScan != nil {
		s := *r.lastScan
		rep.LastScan = &s
	}
	if rep.LastError == "" && r.scanErr != "" {
		rep.LastError = r.scanErr
	}
	taken := r.pending
	r.pending = nil
	rep.Detections = taken
	if rep.Detections == nil {
		rep.Detections = []ReportDetection{}
	}
	return rep, taken
}

func (r *NodeReporter) restore(taken []ReportDetection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := append(taken, r.pending...)
	if len(all) > maxReportDetections {
		all = all[len(all)-maxReportDetections:]
	}
	r.pending = all
}

// Run sends a report whenever one is due, until ctx ends.
func (r *NodeReporter) Run(ctx context.Context) error {
	fails := 0
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty:
		case <-retry:
		}
		retry = nil
		if err := r.send(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fails++
			d := min(5*time.Second<<min(fails-1, 8), 10*time.Minute)
			d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
			if fails == 1 {
				r.log.Warn("report to the mirror failed; retrying", "err", err, "in", d.Round(time.Second))
			} else {
				r.log.Debug("report to the mirror failed", "err", err, "in", d.Round(time.Second))
			}
			retry = time.After(d)
			continue
		}
		if fails > 0 {
			r.log.Info("report to the mirror sent again")
		}
		fails = 0
	}
}

func (r *NodeReporter) send(ctx context.Context) error {
	rep, taken := r.build(ctx)
	var err error
	for _, m := range r.mirrors {
		if err = m.PostReport(ctx, r.node, rep); err == nil {
			r.mu.Lock()
			r.sent++
			r.mu.Unlock()
			r.log.Debug("report sent to the mirror", "mirror_url", m.URL(), "detections", len(rep.Detections))
			return nil
		}
	}
	r.restore(taken)
	return err
}
