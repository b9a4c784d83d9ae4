package report

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// ScanMetrics are the avfleet_agent_scan_* metrics. Every counter advances
// when a scan summary arrives (at the end of a scan), so all of them describe
// the same set of finished scans; detections appear in the log and syslog as
// they happen.
type ScanMetrics struct {
	scans           *prometheus.CounterVec
	files           prometheus.Counter
	bytes           prometheus.Counter
	skipped         *prometheus.CounterVec
	errors          prometheus.Counter
	detections      prometheus.Counter
	incrementalHits prometheus.Counter
	duration        prometheus.Histogram
	lastTimestamp   prometheus.Gauge
	lastDetections  prometheus.Gauge
}

// NewScanMetrics registers the scan metrics on reg (nil: not registered, for
// callers that only want the Sink).
func NewScanMetrics(reg prometheus.Registerer) (*ScanMetrics, error) {
	const ns, sub = "avfleet", "agent_scan"
	m := &ScanMetrics{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "scans_total",
			Help: "Scans finished, by trigger (schedule, on-demand) and result (clean, infected, error, cancelled)."},
			[]string{"trigger", "result"}),
		files: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "files_total",
			Help: "Files scanned by clamd."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_total",
			Help: "Bytes scanned by clamd."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "skipped_total",
			Help: "Files not scanned, by reason."}, []string{"reason"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Files that could not be scanned."}),
		detections: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "detections_total",
			Help: "Infected files found."}),
		incrementalHits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "incremental_hits_total",
			Help: "Files skipped because they were clean and unchanged under the same definitions."}),
		// Scans take from seconds (a container) to many hours (a file server).
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "duration_seconds",
			Help: "How long scans took.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		lastTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_scan_timestamp_seconds",
			Help: "When the last scan ended (Unix time)."}),
		lastDetections: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_scan_detections",
			Help: "Infected files found by the last scan."}),
	}
	// Known series exist from the start, so rate() and absent() alerts work
	// before the first scan.
	for _, t := range []string{TriggerSchedule, TriggerOnDemand} {
		for _, r := range []string{ResultClean, ResultInfected, ResultError, ResultCancelled} {
			m.scans.WithLabelValues(t, r)
		}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.scans, m.files, m.bytes, m.skipped, m.errors, m.detections,
			m.incrementalHits, m.duration, m.lastTimestamp, m.lastDetections} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register scan metrics: %w", err)
			}
		}
	}
	return m, nil
}

// ObserveScan adds one finished scan.
func (m *ScanMetrics) ObserveScan(s ScanSummary) {
	m.scans.WithLabelValues(s.Trigger, s.Result).Inc()
	m.files.Add(nonNeg(s.Files))
	m.bytes.Add(nonNeg(s.Bytes))
	for reason, n := range s.SkippedByReason {
		m.skipped.WithLabelValues(reason).Add(nonNeg(n))
	}
	if len(s.SkippedByReason) == 0 && s.Skipped > 0 {
		m.skipped.WithLabelValues("other").Add(float64(s.Skipped))
	}
	m.errors.Add(nonNeg(s.Errors))
	m.detections.Add(nonNeg(s.Detections))
	m.incrementalHits.Add(nonNeg(s.IncrementalHits))
	m.duration.Observe(s.Duration.Seconds())
	if !s.End.IsZero() {
		m.lastTimestamp.Set(float64(s.End.UnixNano()) / 1e9)
	}
	m.lastDetections.Set(float64(s.Detections))
}

// Report makes ScanMetrics a Sink; it uses scan summaries only.
func (m *ScanMetrics) Report(_ context.Context, ev Event) error {
	if s, ok := ev.(ScanSummary); ok {
		m.ObserveScan(s)
	}
	return nil
}

// nonNeg guards Counter.Add, which panics on a negative value.
func nonNeg(n int64) float64 {
	if n < 0 {
		return 0
	}
	return float64(n)
}
