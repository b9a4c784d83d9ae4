package agent

import (
	"crypto/x509"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics are the daemon's own avfleet_agent_clamd_* series; the
// updater registers the definitions series.
type agentMetrics struct {
	up       prometheus.Gauge
	restarts prometheus.Counter
	oomKills *prometheus.CounterVec
	tlsEnd   *prometheus.GaugeVec
}

func newAgentMetrics(reg prometheus.Registerer) (*agentMetrics, error) {
	const ns, sub = "avfleet", "agent"
	m := &agentMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "clamd_up",
			Help: "1 when clamd answered PING at the last check (every 5 s)."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "clamd_restarts_total",
			Help: "Times the managed clamd ended without the agent asking (crash, kill, OOM) and was restarted."}),
		oomKills: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "clamd_oom_kills_total",
			Help: "Managed clamd exits that were OOM kills: verdict confirmed (cgroup counter) or probable (SIGKILL under a memory limit)."},
			[]string{"verdict"}),
		tlsEnd: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "tls_certificate_expiry_timestamp_seconds",
			Help: "When the TLS certificates the agent uses end (NotAfter, Unix time): client = mirror.cert, ca = the certificate of mirror.ca that ends first."},
			[]string{"cert"}),
	}
	m.oomKills.WithLabelValues("confirmed")
	m.oomKills.WithLabelValues("probable")
	for _, c := range []prometheus.Collector{m.up, m.restarts, m.oomKills, m.tlsEnd} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}

// setCertificates records when the agent's certificates end (read at start:
// the agent loads them once).
func (m *agentMetrics) setCertificates(client, ca *x509.Certificate) {
	for label, c := range map[string]*x509.Certificate{"client": client, "ca": ca} {
		if c != nil {
			m.tlsEnd.WithLabelValues(label).Set(float64(c.NotAfter.Unix()))
		}
	}
}
