package updater

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Failure reasons, the "reason" label of avfleet_agent_update_failures_total.
const (
	ReasonUnreachable = "unreachable" // no answer from any mirror URL (network, TLS, 5xx)
	ReasonMirror      = "mirror"      // the mirror answered, but not as docs/api.md says (4xx, bad manifest, no databases)
	ReasonChecksum    = "checksum"    // a download differs from the manifest's size or SHA-256
	ReasonVerify      = "verify"      // a database or cdiff failed internal/cvd's verification
	ReasonInstall     = "install"     // writing the new set under state_dir failed
	ReasonReload      = "reload"      // clamd did not load the new set; the previous one was put back
)

var allReasons = []string{ReasonUnreachable, ReasonMirror, ReasonChecksum, ReasonVerify, ReasonInstall, ReasonReload}

// Metrics are the updater's avfleet_agent_* series.
type Metrics struct {
	version         *prometheus.GaugeVec
	buildTime       *prometheus.GaugeVec
	lastAttempt     prometheus.Gauge
	lastSuccess     prometheus.Gauge
	downloaded      *prometheus.CounterVec
	failures        *prometheus.CounterVec
	updates         prometheus.Counter
	stale           prometheus.Gauge
	staleReason     *prometheus.GaugeVec
	confirmedSigs   prometheus.Gauge
	propagationSecs prometheus.Histogram

	mu     sync.Mutex
	builds map[string]time.Time // for the age collector
	now    func() time.Time
}

// NewMetrics registers the updater's metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "avfleet", "agent"
	m := &Metrics{
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "definitions_version",
			Help: "Version of each installed database, as confirmed loaded by clamd."}, []string{"database"}),
		buildTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "definitions_build_time_seconds",
			Help: "Build time (header stime, Unix time) of each installed database."}, []string{"database"}),
		lastAttempt: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_update_attempt_timestamp_seconds",
			Help: "When the last update cycle ended, successful or not (Unix time)."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_update_success_timestamp_seconds",
			Help: "When an update cycle last ended with the newest definitions installed (Unix time)."}),
		downloaded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "download_bytes_total",
			Help: "Bytes downloaded from the mirror, by kind of file (cdiff, full, sign)."}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "update_failures_total",
			Help: "Update cycles that failed, by reason."}, []string{"reason"}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "updates_total",
			Help: "New sets of definitions installed and confirmed."}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "definitions_stale",
			Help: "1 while the stale_definitions alert fires for any reason (see avfleet_agent_definitions_stale_reason)."}),
		staleReason: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "definitions_stale_reason",
			Help: "1 while the stale_definitions alert fires for this reason: age (the definitions were built longer ago than report.stale_after) or mirror (not confirmed current with a mirror within report.stale_after)."},
			[]string{"reason"}),
		confirmedSigs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "clamd_loaded_signatures",
			Help: "Signatures clamd reported loading at the last confirmed reload (managed clamd only)."}),
		propagationSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "update_propagation_seconds",
			Help:    "From the mirror publishing a set (manifest published_at) to clamd confirming it on this node.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600}}),
		builds: map[string]time.Time{},
		now:    time.Now,
	}
	for _, r := range allReasons {
		m.failures.WithLabelValues(r)
	}
	for _, r := range []string{StaleAge, StaleMirror} {
		m.staleReason.WithLabelValues(r)
	}
	for _, k := range []string{"cdiff", "full", "sign"} {
		m.downloaded.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.version, m.buildTime, m.lastAttempt, m.lastSuccess, m.downloaded,
			m.failures, m.updates, m.stale, m.staleReason, m.confirmedSigs, m.propagationSecs, ageCollector{m}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register updater metrics: %w", err)
			}
		}
	}
	return m, nil
}

var ageDesc = prometheus.NewDesc("avfleet_agent_definitions_age_seconds",
	"Seconds since each installed database was built (header build time).", []string{"database"}, nil)

// ageCollector computes ages at scrape time, so they grow between updates.
type ageCollector struct{ m *Metrics }

func (c ageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ageDesc }

func (c ageCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	now := c.m.now()
	for db, t := range c.m.builds {
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, now.Sub(t).Seconds(), db)
	}
}

// setInstalled records the set clamd now runs.
func (m *Metrics) setInstalled(s *Set) {
	if m == nil || s == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version.Reset()
	m.buildTime.Reset()
	m.builds = map[string]time.Time{}
	for name, d := range s.DBs {
		m.version.WithLabelValues(name).Set(float64(d.Header.Version))
		if !d.Header.Time.IsZero() {
			m.buildTime.WithLabelValues(name).Set(float64(d.Header.Time.Unix()))
			m.builds[name] = d.Header.Time
		}
	}
}

func (m *Metrics) attempt(t time.Time, ok bool, reason string) {
	if m == nil {
		return
	}
	m.lastAttempt.Set(unixSeconds(t))
	if ok {
		m.lastSuccess.Set(unixSeconds(t))
	} else {
		m.failures.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) download(kind string, n int64) {
	if m != nil && n > 0 {
		m.downloaded.WithLabelValues(kind).Add(float64(n))
	}
}

func (m *Metrics) setStale(s staleReasons) {
	if m == nil {
		return
	}
	m.stale.Set(b2f(s.any()))
	m.staleReason.WithLabelValues(StaleAge).Set(b2f(s.age))
	m.staleReason.WithLabelValues(StaleMirror).Set(b2f(s.mirror))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
