package mirror

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// metrics are the daemon's Prometheus series, all prefixed avfleet_mirror_.
// Counts that CLI commands also change (imports, rejections) are read from
// state.db at scrape time, so they include imports done while the daemon ran.
type metrics struct {
	requests      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	tlsFailures   *prometheus.CounterVec
	reportsTotal  prometheus.Counter
	watchers      prometheus.Gauge
	pipelineError prometheus.Counter
}

const ns = "avfleet_mirror"

func newMetrics(reg prometheus.Registerer, d *Daemon) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total",
			Help: "HTTP requests answered, by path class and status code."}, []string{"class", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_response_bytes_total",
			Help: "Response body bytes sent, by path class."}, []string{"class"}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tls_handshake_failures_total",
			Help: "TLS handshakes refused or failed, by reason (no_certificate, unknown_ca, expired, bad_key_usage, client_alert, ...)."}, []string{"reason"}),
		reportsTotal: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "node_reports_total",
			Help: "Node reports stored."}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "watchers",
			Help: "Clients waiting in /api/v1/watch now."}),
		pipelineError: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "pipeline_errors_total",
			Help: "Failures of the incoming/ scan itself (I/O, lock), not rejections."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.bytes, m.tlsFailures, m.reportsTotal, m.watchers, m.pipelineError, &storeCollector{d: d})
	}
	return m
}

// storeCollector reads the published set, state.db and the node cache at
// scrape time.
type storeCollector struct{ d *Daemon }

var (
	descVersion = prometheus.NewDesc(ns+"_database_version", "Version of the database served (the pinned one when held or rolled back).", []string{"database"}, nil)
	descBuild   = prometheus.NewDesc(ns+"_database_build_timestamp_seconds", "Header build time of the database served.", []string{"database"}, nil)
	descLatest  = prometheus.NewDesc(ns+"_database_latest_version", "Newest verified version held, served or not.", []string{"database"}, nil)
	descHeld    = prometheus.NewDesc(ns+"_database_pinned", "1 when the database is held or rolled back.", []string{"database", "kind"}, nil)
	descImports = prometheus.NewDesc(ns+"_imports_total", "Files through the verifier pipeline, by outcome (accepted, ignored, rejected).", []string{"outcome"}, nil)
	descRejects = prometheus.NewDesc(ns+"_rejections_total", "Rejected files by failed check (format, body-md5, header-signature, version, ...).", []string{"check"}, nil)
	descNodes   = prometheus.NewDesc(ns+"_nodes", "Nodes by state: total (ever reported), reporting (within 24 h), current (reporting and at every served version).", []string{"state"}, nil)
	descGen     = prometheus.NewDesc(ns+"_published_generation", "Generation of the verified set served.", nil, nil)
	descPending = prometheus.NewDesc(ns+"_incoming_pending", "Files waiting in incoming/.", nil, nil)
	descReady   = prometheus.NewDesc(ns+"_ready", "1 once a verified set with at least one database is served.", nil, nil)
	descTLSEnd  = prometheus.NewDesc(ns+"_tls_certificate_expiry_timestamp_seconds",
		"When the TLS certificate in use ends (NotAfter, Unix time): server = tls.cert, client_ca = the certificate of tls.client_ca that ends first.", []string{"cert"}, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVersion, descBuild, descLatest, descHeld, descImports, descRejects, descNodes, descGen, descPending, descReady, descTLSEnd} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	set := c.d.bc.load()
	ready := 0.0
	if len(set.manifest.Databases) > 0 {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	ch <- prometheus.MustNewConstMetric(descGen, prometheus.GaugeValue, float64(set.index.Generation))
	for _, db := range set.manifest.Databases {
		ch <- prometheus.MustNewConstMetric(descVersion, prometheus.GaugeValue, float64(db.Version), db.Name)
		if !db.BuildTime.IsZero() {
			ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, float64(db.BuildTime.Unix()), db.Name)
		}
		kind := ""
		if db.Held {
			kind = "hold"
		} else if db.RolledBack {
			kind = "rollback"
		}
		v := 0.0
		if kind != "" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, v, db.Name, kind)
	}
	if cat, err := loadCatalog(c.d.store.history, false); err == nil {
		for _, n := range cat.names() {
			ch <- prometheus.MustNewConstMetric(descLatest, prometheus.GaugeValue, float64(cat[n].newest()), n)
		}
	}
	st := c.d.store.State()
	if imp, err := st.Counters("imports"); err == nil {
		for _, o := range []Outcome{Accepted, Ignored, Rejected} {
			ch <- prometheus.MustNewConstMetric(descImports, prometheus.CounterValue, float64(imp[string(o)]), string(o))
		}
	}
	if rej, err := st.Counters("rejections"); err == nil {
		for check, n := range rej {
			ch <- prometheus.MustNewConstMetric(descRejects, prometheus.CounterValue, float64(n), check)
		}
	}
	nc := c.d.nodes.counts(set.manifest, time.Now())
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(nc.Total), "total")
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(nc.Reporting), "reporting")
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(nc.Current), "current")
	if p, err := c.d.store.Pending(); err == nil {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(len(p)))
	}
	if r := c.d.tlsReload; r != nil {
		// Read at scrape time: a SIGHUP with a renewed certificate shows at once.
		if cert := r.Certificate(); cert != nil {
			ch <- prometheus.MustNewConstMetric(descTLSEnd, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), "server")
		}
		if ca := tlsutil.FirstToExpire(r.ClientCAs()); ca != nil {
			ch <- prometheus.MustNewConstMetric(descTLSEnd, prometheus.GaugeValue, float64(ca.NotAfter.Unix()), "client_ca")
		}
	}
}

// nodeCache keeps the latest report of every node in memory, so that
// scrapes do not read thousands of rows.
type nodeCache struct {
	mu    sync.Mutex
	nodes map[string]NodeRecord
}

func (n *nodeCache) put(r NodeRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes == nil {
		n.nodes = map[string]NodeRecord{}
	}
	n.nodes[r.Node] = r
}

func (n *nodeCache) counts(m api.Manifest, now time.Time) NodeCounts {
	n.mu.Lock()
	recs := make([]NodeRecord, 0, len(n.nodes))
	for _, r := range n.nodes {
		recs = append(recs, r)
	}
	n.mu.Unlock()
	return countNodes(recs, m, now)
}
