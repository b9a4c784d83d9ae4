package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The JSON field names are a public contract (SIEM parsers, the mirror's node
// reports); this pins them.
func TestEventJSONFieldNames(t *testing.T) {
	want := map[Kind][]string{
		KindDetection: {"action", "action_error", "action_result", "container", "container_path", "db_versions", "node",
			"path", "quarantine_id", "scan_id", "signature", "time"},
		KindScan: {"bytes", "containers", "db_versions", "detections", "duration_seconds", "end", "error", "errors", "files",
			"incremental_hits", "node", "paths", "result", "scan_id", "skipped", "skipped_by_reason", "start", "trigger"},
		KindUpdate: {"bytes", "duration_seconds", "error", "new_versions", "node", "old_versions", "result", "source", "stale", "time"},
		KindAlert:  {"age_seconds", "db_versions", "message", "name", "node", "reason", "state", "threshold_seconds", "time"},
	}
	seen := map[Kind]bool{}
	for _, ev := range sampleEvents() {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range m {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, want[ev.Kind()]) {
			t.Errorf("%s JSON keys %v, want %v", ev.Kind(), keys, want[ev.Kind()])
		}
		// The log line and syslog use the same names.
		var names []string
		for _, f := range ev.fields() {
			names = append(names, f.name)
		}
		slices.Sort(names)
		if !slices.Equal(names, want[ev.Kind()]) {
			t.Errorf("%s field names %v, want %v", ev.Kind(), names, want[ev.Kind()])
		}
		seen[ev.Kind()] = true
	}
	if len(seen) != len(want) {
		t.Errorf("sample events cover %v", seen)
	}
}

func TestEventJSONRoundTrip(t *testing.T) {
	for _, ev := range sampleEvents() {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		back := reflect.New(reflect.TypeOf(ev))
		if err := json.Unmarshal(b, back.Interface()); err != nil {
			t.Fatalf("%s: %v", ev.Kind(), err)
		}
		if got := back.Elem().Interface(); !reflect.DeepEqual(got, ev) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", ev.Kind(), got, ev)
		}
	}
	var s ScanSummary
	if err := json.Unmarshal([]byte(`{"duration_seconds": 1.5}`), &s); err != nil || s.Duration != 1500*time.Millisecond {
		t.Errorf("duration_seconds 1.5 -> %v, %v", s.Duration, err)
	}
}

func TestReporterLogLine(t *testing.T) {
	for _, ev := range sampleEvents() {
		t.Run(string(ev.Kind()), func(t *testing.T) {
			var buf bytes.Buffer
			r := NewReporter(slog.New(slog.NewJSONHandler(&buf, nil)), "default-node")
			if err := r.Report(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
			if len(lines) != 1 {
				t.Fatalf("%d log lines:\n%s", len(lines), buf.Bytes())
			}
			var line map[string]any
			if err := json.Unmarshal(lines[0], &line); err != nil {
				t.Fatal(err)
			}
			evJSON, _ := json.Marshal(ev)
			var want map[string]any
			json.Unmarshal(evJSON, &want)
			for k, v := range want {
				got, ok := line[k]
				if k == "time" || k == "start" || k == "end" {
					gt, err1 := time.Parse(time.RFC3339Nano, got.(string))
					wt, err2 := time.Parse(time.RFC3339Nano, v.(string))
					if err1 != nil || err2 != nil || !gt.Equal(wt) {
						t.Errorf("%s = %v, want %v", k, got, v)
					}
					continue
				}
				if m, isMap := v.(map[string]any); (v == nil || isMap && len(m) == 0) && !ok {
					continue // slog leaves an empty group out of the line
				}
				if !ok || !reflect.DeepEqual(got, v) {
					t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, v)
				}
			}
			if line["event"] != string(ev.Kind()) || line["msg"] != ev.logMessage() {
				t.Errorf("event %v msg %v", line["event"], line["msg"])
			}
			if line["level"] != ev.severity().slogLevel().String() {
				t.Errorf("level %v, want %v", line["level"], ev.severity().slogLevel())
			}
			if ev.Kind() == KindScan && line["time"] == nil {
				t.Error("scan line has no time")
			}
		})
	}
}

func TestReporterLevels(t *testing.T) {
	var buf bytes.Buffer
	r := NewReporter(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), "n")
	r.Report(t.Context(), ScanSummary{ScanID: "a", Result: ResultClean})    // info: filtered
	r.Report(t.Context(), Detection{Path: "/x", Signature: "S"})            // warn
	r.Report(t.Context(), UpdateEvent{Result: UpdateFailed, Error: "boom"}) // error
	var levels []string
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		json.Unmarshal(l, &m)
		levels = append(levels, m["level"].(string)+" "+m["msg"].(string))
	}
	if want := []string{"WARN virus found", "ERROR definitions update failed"}; !slices.Equal(levels, want) {
		t.Errorf("lines %v, want %v", levels, want)
	}
}

func TestReporterFanOutAndNormalize(t *testing.T) {
	var got1, got2 []Event
	failing := SinkFunc(func(ctx context.Context, ev Event) error { return errors.New("disk full") })
	var buf bytes.Buffer
	r := NewReporter(slog.New(slog.NewTextHandler(&buf, nil)), "node-a",
		SinkFunc(func(_ context.Context, ev Event) error { got1 = append(got1, ev); return nil }),
		nil, // an unconfigured optional sink
		failing,
		SinkFunc(func(_ context.Context, ev Event) error { got2 = append(got2, ev); return nil }),
	)
	local := time.FixedZone("CET", 3600)
	r.now = func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, local) }

	err := r.Report(t.Context(), Detection{Path: "/srv/x", Signature: "Eicar-Test-Signature"})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("error %v, want the failing sink's", err)
	}
	if len(got1) != 1 || len(got2) != 1 {
		t.Fatalf("sinks got %d and %d events; a failing sink must not stop the others", len(got1), len(got2))
	}
	d := got2[0].(Detection)
	if d.Node != "node-a" || d.Action != ActionNotify || d.ActionResult != ActionOK {
		t.Errorf("not normalised: %+v", d)
	}
	if want := time.Date(2025, 1, 2, 2, 4, 5, 0, time.UTC); !d.Time.Equal(want) || d.Time.Location() != time.UTC {
		t.Errorf("time %v, want %v in UTC", d.Time, want)
	}
	if !strings.Contains(buf.String(), "report sink failed") || !strings.Contains(buf.String(), `path=/srv/x`) {
		t.Errorf("log:\n%s", buf.String())
	}

	r.Report(t.Context(), ScanSummary{ScanID: "s", End: time.Date(2025, 1, 1, 0, 1, 0, 0, local), Duration: time.Minute})
	s := got2[1].(ScanSummary)
	if !s.Start.Equal(s.End.Add(-time.Minute)) || s.Node != "node-a" || s.End.Location() != time.UTC {
		t.Errorf("scan not normalised: start %v end %v node %q", s.Start, s.End, s.Node)
	}
	r.Report(t.Context(), Alert{Name: AlertStaleDefinitions, Node: "other"})
	if a := got2[2].(Alert); a.State != AlertFiring || a.Node != "other" {
		t.Errorf("alert %+v", a)
	}
}

// TestReporterToHistoryAndMetrics wires the real sinks together as the agent
// will.
func TestReporterToHistoryAndMetrics(t *testing.T) {
	h := openTestHistory(t)
	m, err := NewScanMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReporter(slog.New(slog.DiscardHandler), "n1", h, m)
	for _, ev := range sampleEvents() {
		if err := r.Report(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	scans, err := h.RecentScans(t.Context(), 10)
	if err != nil || len(scans) != 1 {
		t.Fatalf("scans %v, %v", scans, err)
	}
	n, err := h.DetectionCountSince(t.Context(), time.Time{})
	if err != nil || n != 2 {
		t.Errorf("detections %d, %v; want 2", n, err)
	}
	ups, err := h.RecentUpdates(t.Context(), 0)
	if err != nil || len(ups) != 2 {
		t.Errorf("updates %d, %v; want 2", len(ups), err)
	}
}
