package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics are the daemon's own avfleet_agent_clamd_* series; the
// updater registers the definitions series.
type agentMetrics struct {
	up       prometheus.Gauge
	restarts prometheus.Counter
	oomKills *prometheus.CounterVec
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
	}
	m.oomKills.WithLabelValues("confirmed")
	m.oomKills.WithLabelValues("probable")
	for _, c := range []prometheus.Collector{m.up, m.restarts, m.oomKills} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}
