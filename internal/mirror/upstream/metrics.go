package upstream

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const ns = "avfleet_mirror_sync"

// metrics are sync's Prometheus series, all prefixed avfleet_mirror_sync_.
type metrics struct {
	checks          *prometheus.CounterVec
	requests        *prometheus.CounterVec
	bytes           *prometheus.CounterVec
	fallbacks       *prometheus.CounterVec
	upstreamVersion *prometheus.GaugeVec
	lastSuccess     *prometheus.GaugeVec
	cooldowns       *cooldownCollector
}

func newMetrics(urls []string, now func() time.Time) *metrics {
	return &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "checks_total",
			Help: "Upstream checks by database and result (current, updated, failed, cooldown)."}, []string{"database", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "HTTP requests to upstream by kind (header, cvd, cdiff, sign) and status code (\"error\": no answer)."}, []string{"kind", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_total",
			Help: "Response body bytes read from upstream by kind."}, []string{"kind"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "full_downloads_total",
			Help: "Full CVD downloads by database and why (initial, missing_cdiff, rejected_cdiff, chain_too_long)."}, []string{"database", "reason"}),
		upstreamVersion: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "upstream_version",
			Help: "Newest version upstream advertised at the last check."}, []string{"database"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "last_success_timestamp_seconds",
			Help: "When a check of the database last ended current or updated (unix seconds)."}, []string{"database"}),
		cooldowns: &cooldownCollector{urls: urls, now: now, until: map[string]time.Time{},
			desc: prometheus.NewDesc(ns+"_cooldown_seconds", "Seconds until the upstream URL may be asked again after a 429 or 403 (0: not cooling down).",
				[]string{"upstream"}, nil)},
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.checks, m.requests, m.bytes, m.fallbacks, m.upstreamVersion, m.lastSuccess, m.cooldowns} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// cooldownCollector reports the time left at scrape time, so the gauge
// counts down between checks.
type cooldownCollector struct {
	urls []string
	now  func() time.Time
	desc *prometheus.Desc

	mu    sync.Mutex
	until map[string]time.Time
}

func (c *cooldownCollector) set(scope string, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.until[scope] = until
}

func (c *cooldownCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *cooldownCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, u := range c.urls {
		left := c.until[u].Sub(now).Seconds()
		if left < 0 {
			left = 0
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, left, u)
	}
}
