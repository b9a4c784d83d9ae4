package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/agent"
	"github.com/avfleet/avfleet/internal/agent/quarantine"
	"github.com/avfleet/avfleet/internal/agent/schedule"
	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/report"
	"github.com/avfleet/avfleet/internal/testutil"
)

func foundLines(out string) []string {
	var l []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), " FOUND") {
			l = append(l, sc.Text())
		}
	}
	slices.Sort(l)
	return l
}

// TestScanMatchesClamscan: with test-6.cvd loaded, `avfleet scan` reports
// exactly the files and signatures that stock clamscan reports.
func TestScanMatchesClamscan(t *testing.T) {
	const dir = "/usr/share/clamav-testfiles"
	testutil.NeedFile(t, dir)
	clamscan := testutil.NeedCommand(t, "clamscan")
	db := filepath.Join(testutil.ClamAVTestdata(t), "test-6.cvd")
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})

	ref, err := exec.Command(clamscan, "-r", "--no-summary", "-d", db, dir).Output()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("clamscan: %v", err)
	}
	want := foundLines(string(ref))
	if len(want) < 40 {
		t.Fatalf("clamscan found only %d files in %s: %s", len(want), dir, ref)
	}
	code, out, errOut := runCLI(t, "scan", "--clamd", r.Socket, "--no-progress", dir)
	if code != exitFailure {
		t.Fatalf("exit %d, want 1 (found); stderr:\n%s", code, errOut)
	}
	if got := foundLines(out); !slices.Equal(got, want) {
		t.Errorf("avfleet scan and clamscan differ:\navfleet:  %q\nclamscan: %q", got, want)
	}
	for _, l := range []string{"----------- SCAN SUMMARY -----------", fmt.Sprintf("Infected files: %d", len(want)), "Data scanned: ", "Time: "} {
		if !strings.Contains(out, l) {
			t.Errorf("summary lacks %q:\n%s", l, out)
		}
	}
}

func TestScanCommand(t *testing.T) {
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	base := t.TempDir()
	clean := filepath.Join(base, "clean")
	os.MkdirAll(clean, 0o755)
	for i := range 20 {
		os.WriteFile(filepath.Join(clean, fmt.Sprintf("f%d", i)), []byte(strings.Repeat("x", i*100)), 0o644)
	}
	infected := filepath.Join(base, "infected")
	os.MkdirAll(infected, 0o755)
	bad := filepath.Join(infected, "eicar.com")
	os.WriteFile(bad, clamdtest.EICAR, 0o640)

	t.Run("exit codes", func(t *testing.T) {
		if code, out, e := runCLI(t, "scan", "--clamd", r.Socket, clean); code != exitOK || !strings.Contains(out, "Scanned files: 20") {
			t.Errorf("clean: exit %d\n%s%s", code, out, e)
		}
		if code, out, _ := runCLI(t, "scan", "--clamd", r.Socket, infected); code != exitFailure || !strings.Contains(out, bad+": Eicar-Test-Signature FOUND") {
			t.Errorf("infected: exit %d\n%s", code, out)
		}
		if code, out, _ := runCLI(t, "scan", "--clamd", r.Socket, filepath.Join(base, "nonexistent")); code != exitError || !strings.Contains(out, "missing") {
			t.Errorf("missing path: exit %d\n%s", code, out)
		}
		if code, _, e := runCLI(t, "scan", "--clamd", "unix:///nonexistent.sock", clean); code != exitError || !strings.Contains(e, "does not answer") {
			t.Errorf("no clamd: exit %d %s", code, e)
		}
		if code, _, _ := runCLI(t, "scan", "--clamd", "http://x", clean); code != exitError {
			t.Errorf("bad address: exit %d", code)
		}
	})

	t.Run("json", func(t *testing.T) {
		code, out, e := runCLI(t, "scan", "--clamd", r.Socket, "--json", base)
		if code != exitFailure {
			t.Fatalf("exit %d: %s", code, e)
		}
		var events []map[string]any
		for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
			events = append(events, m)
		}
		if len(events) != 2 || events[0]["event"] != "detection" || events[0]["path"] != bad || events[0]["signature"] != "Eicar-Test-Signature" {
			t.Fatalf("events %v", events)
		}
		if s := events[1]; s["event"] != "scan" || s["files"] != float64(21) || s["detections"] != float64(1) || s["result"] != "infected" {
			t.Errorf("summary %v", s)
		}
	})

	t.Run("config: incremental, move, quarantine list and restore", func(t *testing.T) {
		state := filepath.Join(base, "state")
		os.MkdirAll(state, 0o700)
		// The agent's database directory: what clamd loaded.
		if err := os.Symlink(r.DBDir, filepath.Join(state, "db")); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(base, "agent.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`state_dir: %s
clamd: {mode: external, socket: %q}
scan:
  action: move
  quarantine_dir: %s
`, state, r.Socket, filepath.Join(base, "quarantine"))), 0o644)
		if code, out, e := runCLI(t, "scan", "--config", cfg, clean); code != exitOK || !strings.Contains(out, "Scanned files: 20") {
			t.Fatalf("first scan: exit %d\n%s%s", code, out, e)
		}
		if code, out, _ := runCLI(t, "scan", "--config", cfg, clean); code != exitOK || !strings.Contains(out, "Scanned files: 0") || !strings.Contains(out, "Unchanged files: 20") {
			t.Errorf("second scan is not incremental: exit %d\n%s", code, out)
		}
		code, out, _ := runCLI(t, "scan", "--config", cfg, infected)
		if code != exitFailure || !strings.Contains(out, "moved to quarantine as ") {
			t.Fatalf("move: exit %d\n%s", code, out)
		}
		if _, err := os.Lstat(bad); !os.IsNotExist(err) {
			t.Fatalf("moved file still there: %v", err)
		}
		code, out, _ = runCLI(t, "quarantine", "list", "--config", cfg, "--json")
		var list []quarantine.Meta
		if code != exitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Path != bad {
			t.Fatalf("list: exit %d %s", code, out)
		}
		if code, out, _ := runCLI(t, "quarantine", "list", "--config", cfg); code != exitOK || !strings.Contains(out, list[0].ID) || !strings.Contains(out, "Eicar-Test-Signature") {
			t.Errorf("list: exit %d\n%s", code, out)
		}
		os.WriteFile(bad, []byte("a new file at the same path"), 0o644)
		if code, _, e := runCLI(t, "quarantine", "restore", list[0].ID, "--config", cfg); code != exitFailure || !strings.Contains(e, "exists") {
			t.Errorf("restore over a file: exit %d %s", code, e)
		}
		os.Remove(bad)
		if code, out, e := runCLI(t, "quarantine", "restore", list[0].ID, "--config", cfg); code != exitOK || !strings.Contains(out, "restored to "+bad) {
			t.Fatalf("restore: exit %d %s %s", code, out, e)
		}
		if b, _ := os.ReadFile(bad); string(b) != string(clamdtest.EICAR) {
			t.Errorf("restored content %q", b)
		}
		if fi, _ := os.Stat(bad); fi.Mode().Perm() != 0o640 {
			t.Errorf("restored mode %s", fi.Mode())
		}
		if code, _, _ := runCLI(t, "quarantine", "restore", list[0].ID, "--config", cfg); code != exitFailure {
			t.Errorf("second restore: exit %d, want 1", code)
		}
	})
}

// TestScheduledScansPart runs the agent's scan part on a real clamd: a
// scheduled scan missed while the agent was down (schedule.json older than
// the last cron start) runs at once, reports through the Reporter, and is
// recorded as the last run.
func TestScheduledScansPart(t *testing.T) {
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	base := t.TempDir()
	state := filepath.Join(base, "state")
	os.MkdirAll(state, 0o700)
	tree := filepath.Join(base, "tree")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "eicar.com"), clamdtest.EICAR, 0o644)
	os.WriteFile(filepath.Join(tree, "clean.txt"), []byte("clean"), 0o644)
	os.WriteFile(filepath.Join(state, scheduleStateFile), []byte(`{"last_run":"2020-01-01T00:00:00Z"}`), 0o600)
	cfgFile := filepath.Join(base, "agent.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`state_dir: %s
clamd: {mode: external, socket: %q}
scan: {schedule: {cron: "0 3 * * *"}, paths: [%q], containers: false}
`, state, r.Socket, tree)), 0o644)
	cfg, err := config.LoadAgent(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	part, err := scheduledScansPart(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clamd.NewClient(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan report.Event, 10)
	rep := report.NewReporter(slog.New(slog.DiscardHandler), "node-a", report.SinkFunc(func(_ context.Context, ev report.Event) error {
		events <- ev
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- part.Run(ctx, &agent.Runtime{Config: cfg, Node: "node-a", Logger: slog.New(slog.DiscardHandler), Reporter: rep, Clamd: cl, DBDir: r.DBDir})
	}()
	var det report.Detection
	var sum report.ScanSummary
	for sum.ScanID == "" {
		select {
		case ev := <-events:
			switch e := ev.(type) {
			case report.Detection:
				det = e
			case report.ScanSummary:
				sum = e
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the missed scheduled scan did not run")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("part: %v", err)
	}
	if sum.Trigger != report.TriggerSchedule || sum.Files != 2 || sum.Detections != 1 || sum.Node != "node-a" ||
		det.Signature != "Eicar-Test-Signature" || det.Path != filepath.Join(tree, "eicar.com") {
		t.Errorf("summary %+v, detection %+v", sum, det)
	}
	last, err := schedule.FileState{Path: filepath.Join(state, scheduleStateFile)}.LastRun()
	if err != nil || !last.After(time.Now().Add(-time.Minute)) {
		t.Errorf("last run recorded %s, %v", last, err)
	}
}
