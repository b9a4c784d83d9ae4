package report

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestScanMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewScanMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Unix(1750000000, 500_000_000)
	m.Report(t.Context(), ScanSummary{Trigger: TriggerSchedule, Result: ResultInfected, End: end, Duration: 90 * time.Second,
		Files: 100, Bytes: 5000, Skipped: 4, SkippedByReason: map[string]int64{"excluded": 3, "too_large": 1},
		Errors: 2, Detections: 3, IncrementalHits: 50})
	m.Report(t.Context(), ScanSummary{Trigger: TriggerOnDemand, Result: ResultClean, End: end.Add(time.Hour), Duration: 2 * time.Second,
		Files: 10, Bytes: 100, Skipped: 1, IncrementalHits: 5})
	m.Report(t.Context(), Detection{Path: "/x"}) // counted through the summary only

	want := `
# HELP avfleet_agent_scan_bytes_total Bytes scanned by clamd.
# TYPE avfleet_agent_scan_bytes_total counter
avfleet_agent_scan_bytes_total 5100
# HELP avfleet_agent_scan_detections_total Infected files found.
# TYPE avfleet_agent_scan_detections_total counter
avfleet_agent_scan_detections_total 3
# HELP avfleet_agent_scan_errors_total Files that could not be scanned.
# TYPE avfleet_agent_scan_errors_total counter
avfleet_agent_scan_errors_total 2
# HELP avfleet_agent_scan_files_total Files scanned by clamd.
# TYPE avfleet_agent_scan_files_total counter
avfleet_agent_scan_files_total 110
# HELP avfleet_agent_scan_incremental_hits_total Files skipped because they were clean and unchanged under the same definitions.
# TYPE avfleet_agent_scan_incremental_hits_total counter
avfleet_agent_scan_incremental_hits_total 55
# HELP avfleet_agent_scan_last_scan_detections Infected files found by the last scan.
# TYPE avfleet_agent_scan_last_scan_detections gauge
avfleet_agent_scan_last_scan_detections 0
# HELP avfleet_agent_scan_last_scan_timestamp_seconds When the last scan ended (Unix time).
# TYPE avfleet_agent_scan_last_scan_timestamp_seconds gauge
avfleet_agent_scan_last_scan_timestamp_seconds 1.7500036005e+09
# HELP avfleet_agent_scan_skipped_total Files not scanned, by reason.
# TYPE avfleet_agent_scan_skipped_total counter
avfleet_agent_scan_skipped_total{reason="excluded"} 3
avfleet_agent_scan_skipped_total{reason="other"} 1
avfleet_agent_scan_skipped_total{reason="too_large"} 1
`
	names := []string{"avfleet_agent_scan_bytes_total", "avfleet_agent_scan_detections_total", "avfleet_agent_scan_errors_total",
		"avfleet_agent_scan_files_total", "avfleet_agent_scan_incremental_hits_total", "avfleet_agent_scan_last_scan_detections",
		"avfleet_agent_scan_last_scan_timestamp_seconds", "avfleet_agent_scan_skipped_total"}
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	for _, tc := range []struct {
		trigger, result string
		want            float64
	}{
		{TriggerSchedule, ResultInfected, 1}, {TriggerOnDemand, ResultClean, 1}, {TriggerSchedule, ResultClean, 0}, {TriggerOnDemand, ResultError, 0},
	} {
		if got := promtest.ToFloat64(m.scans.WithLabelValues(tc.trigger, tc.result)); got != tc.want {
			t.Errorf("scans_total{%s,%s} = %v, want %v", tc.trigger, tc.result, got, tc.want)
		}
	}
	// All 8 trigger x result series exist before they are used.
	if n := promtest.CollectAndCount(m.scans); n != 8 {
		t.Errorf("%d scans_total series, want 8", n)
	}
	if n, err := promtest.GatherAndCount(reg, "avfleet_agent_scan_duration_seconds"); err != nil || n != 1 {
		t.Errorf("duration histogram: %d, %v", n, err)
	}
	if _, err := NewScanMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
	problems, err := promtest.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}
