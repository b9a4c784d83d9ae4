package report

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTestHistory(t *testing.T) *History {
	t.Helper()
	h, err := OpenHistory(filepath.Join(t.TempDir(), HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestHistoryRoundTrip(t *testing.T) {
	h := openTestHistory(t)
	ev := sampleEvents()
	d1, d2 := ev[0].(Detection), ev[1].(Detection)
	d2.ScanID = d1.ScanID
	scan := ev[2].(ScanSummary)
	if err := h.InsertScan(t.Context(), scan, d1, d2); err != nil {
		t.Fatal(err)
	}
	scans, err := h.RecentScans(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(scans) != 1 || !reflect.DeepEqual(scans[0], scan) {
		t.Errorf("scan read back:\n got %#v\nwant %#v", scans, scan)
	}
	dets, err := h.ScanDetections(t.Context(), scan.ScanID)
	if err != nil {
		t.Fatal(err)
	}
	// A nil map comes back as nil, so the zero-value second detection matches.
	if len(dets) != 2 || !reflect.DeepEqual(dets[0], d1) || !reflect.DeepEqual(dets[1], d2) {
		t.Errorf("detections read back:\n got %#v\nwant %#v, %#v", dets, d1, d2)
	}
	up, up2 := ev[3].(UpdateEvent), ev[4].(UpdateEvent)
	up2.Time = up2.Time.Add(time.Second)
	for _, u := range []UpdateEvent{up, up2} {
		if err := h.InsertUpdate(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	ups, err := h.RecentUpdates(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || !reflect.DeepEqual(ups[0], up2) || !reflect.DeepEqual(ups[1], up) {
		t.Errorf("updates read back:\n got %#v\nwant %#v, %#v", ups, up2, up)
	}

	// Storing the summary again (a retried report) replaces it.
	scan.Result, scan.Detections = ResultError, 7
	if err := h.InsertScan(t.Context(), scan); err != nil {
		t.Fatal(err)
	}
	scans, _ = h.RecentScans(t.Context(), 0)
	if len(scans) != 1 || scans[0].Result != ResultError || scans[0].Detections != 7 {
		t.Errorf("after upsert: %+v", scans)
	}
	if err := h.InsertScan(t.Context(), ScanSummary{}); err == nil {
		t.Error("a scan without ID was stored")
	}
}

func TestHistoryQueries(t *testing.T) {
	h := openTestHistory(t)
	ctx := t.Context()
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	if last, err := h.LastScanTime(ctx, ""); err != nil || !last.IsZero() {
		t.Errorf("empty history: last scan %v, %v", last, err)
	}
	for i := range 10 {
		trig := TriggerSchedule
		if i%3 == 2 {
			trig = TriggerOnDemand
		}
		end := t0.Add(time.Duration(i) * time.Hour)
		s := ScanSummary{ScanID: "s" + strconv.Itoa(i), Node: "n", Trigger: trig, Result: ResultInfected,
			Start: end.Add(-time.Minute), End: end, Duration: time.Minute}
		var dets []Detection
		for j := range i % 3 {
			dets = append(dets, Detection{ScanID: s.ScanID, Time: end.Add(-time.Duration(j) * time.Second), Node: "n",
				Path: fmt.Sprintf("/f/%d/%d", i, j), Signature: "Sig"})
		}
		if err := h.InsertScan(ctx, s, dets...); err != nil {
			t.Fatal(err)
		}
	}
	// Scans 0..9 end at hour i; on-demand are 2, 5, 8; detections: i%3 per scan.
	for _, tc := range []struct {
		trigger string
		want    time.Time
	}{{"", t0.Add(9 * time.Hour)}, {TriggerSchedule, t0.Add(9 * time.Hour)}, {TriggerOnDemand, t0.Add(8 * time.Hour)}, {"nope", time.Time{}}} {
		if got, err := h.LastScanTime(ctx, tc.trigger); err != nil || !got.Equal(tc.want) {
			t.Errorf("LastScanTime(%q) = %v, %v; want %v", tc.trigger, got, err, tc.want)
		}
	}
	recent, err := h.RecentScans(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range recent {
		ids = append(ids, s.ScanID)
	}
	if strings.Join(ids, ",") != "s9,s8,s7" {
		t.Errorf("recent scans %v", ids)
	}
	since := t0.Add(5*time.Hour - time.Second) // scans 5..9 hold 2+0+1+2+0 detections
	n, err := h.DetectionCountSince(ctx, since)
	if err != nil || n != 5 {
		t.Errorf("DetectionCountSince = %d, %v; want 5", n, err)
	}
	dets, err := h.DetectionsSince(ctx, since, 0)
	if err != nil || len(dets) != 5 {
		t.Fatalf("DetectionsSince = %d, %v", len(dets), err)
	}
	for i := 1; i < len(dets); i++ {
		if dets[i].Time.Before(dets[i-1].Time) {
			t.Errorf("detections not oldest first: %v", dets)
		}
	}
	if dets, _ := h.DetectionsSince(ctx, since, 2); len(dets) != 2 || dets[0].Path != "/f/5/1" {
		t.Errorf("limit 2: %+v", dets)
	}
}

func TestHistoryPrune(t *testing.T) {
	h := openTestHistory(t)
	ctx := t.Context()
	now := time.Date(2025, 6, 30, 12, 0, 0, 0, time.UTC)
	for day := range 10 {
		at := now.AddDate(0, 0, -day)
		id := "d" + strconv.Itoa(day)
		if err := h.InsertScan(ctx, ScanSummary{ScanID: id, End: at, Start: at}, Detection{ScanID: id, Time: at}); err != nil {
			t.Fatal(err)
		}
		if err := h.InsertUpdate(ctx, UpdateEvent{Time: at, Result: UpdateCurrent}); err != nil {
			t.Fatal(err)
		}
	}
	// Keep 7 days: days 0..7 stay (day 7 is exactly at the cutoff), 8 and 9 go.
	p, err := h.Prune(ctx, now.AddDate(0, 0, -7))
	if err != nil {
		t.Fatal(err)
	}
	if p != (Pruned{Scans: 2, Detections: 2, Updates: 2}) {
		t.Errorf("pruned %+v", p)
	}
	scans, _ := h.RecentScans(ctx, 0)
	if len(scans) != 8 || scans[len(scans)-1].ScanID != "d7" {
		t.Errorf("%d scans left, oldest %s", len(scans), scans[len(scans)-1].ScanID)
	}
	if p, _ := h.Prune(ctx, now.AddDate(0, 0, -7)); p != (Pruned{}) {
		t.Errorf("second prune removed %+v", p)
	}
}

func TestHistoryReopenAndPragmas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub dir?#%", HistoryFile)
	os.MkdirAll(filepath.Dir(path), 0o755)
	h, err := OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.InsertScan(t.Context(), ScanSummary{ScanID: "kept", End: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not at the path given (URI escaping): %v", err)
	}
	h, err = OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	scans, err := h.RecentScans(t.Context(), 0)
	if err != nil || len(scans) != 1 || scans[0].ScanID != "kept" {
		t.Errorf("after reopen: %v, %v", scans, err)
	}
	var mode string
	var sync, version int
	conn, err := h.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode)
	conn.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&sync)
	conn.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version)
	if mode != "wal" || sync != 2 || version != schemaVersion {
		t.Errorf("journal_mode %q synchronous %d user_version %d; want wal, 2 (FULL), %d", mode, sync, version, schemaVersion)
	}
}

func TestHistorySchemaVersions(t *testing.T) {
	dir := t.TempDir()
	t.Run("newer", func(t *testing.T) {
		path := filepath.Join(dir, "newer.db")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		db.Exec("PRAGMA user_version = 99")
		db.Close()
		if _, err := OpenHistory(path); err == nil || !strings.Contains(err.Error(), "schema version 99 is newer") {
			t.Errorf("OpenHistory on a newer schema: %v", err)
		}
		if _, err := OpenHistoryReadOnly(path); err == nil || !strings.Contains(err.Error(), "schema version 99") {
			t.Errorf("OpenHistoryReadOnly on a newer schema: %v", err)
		}
	})
	t.Run("migrates from empty", func(t *testing.T) {
		path := filepath.Join(dir, "empty.db")
		db, _ := sql.Open("sqlite", path)
		db.Exec("CREATE TABLE unrelated (x)") // a file that exists with version 0
		db.Close()
		h, err := OpenHistory(path)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if err := h.InsertDetection(t.Context(), Detection{Path: "/x"}); err != nil {
			t.Error(err)
		}
	})
	t.Run("not a database", func(t *testing.T) {
		path := filepath.Join(dir, "junk.db")
		os.WriteFile(path, []byte(strings.Repeat("not sqlite ", 100)), 0o600)
		_, err := OpenHistory(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenHistory on junk: %v", err)
		}
	})
}

func TestHistoryReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	if _, err := OpenHistoryReadOnly(path); err == nil || !strings.Contains(err.Error(), "has the agent run yet") {
		t.Errorf("read-only open of a missing file: %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("read-only open created the file")
	}
	w, err := OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.InsertScan(t.Context(), ScanSummary{ScanID: "a", End: time.Now()})
	r, err := OpenHistoryReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.InsertScan(t.Context(), ScanSummary{ScanID: "b", End: time.Now()}) // written while the reader is open
	if scans, err := r.RecentScans(t.Context(), 0); err != nil || len(scans) != 2 {
		t.Errorf("reader sees %d scans, %v; want 2", len(scans), err)
	}
	if err := r.InsertUpdate(t.Context(), UpdateEvent{}); err == nil {
		t.Error("a read-only history accepted a write")
	}
}

// TestHistoryConcurrent: the agent's writers and a CLI reader (separate
// handles, as separate processes would have) work at once without SQLITE_BUSY
// reaching the caller.
func TestHistoryConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	w, err := OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w2, err := OpenHistory(path) // a second writer process
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	r, err := OpenHistoryReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	const writers, each = 4, 40
	for g := range writers {
		h := w
		if g%2 == 1 {
			h = w2
		}
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("g%d-%d", g, i)
				if err := h.InsertDetection(ctx, Detection{ScanID: id, Time: time.Now(), Path: "/p"}); err != nil {
					errs <- err
					return
				}
				if err := h.InsertScan(ctx, ScanSummary{ScanID: id, End: time.Now()}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.DetectionCountSince(ctx, time.Time{}); err != nil {
				errs <- err
				return
			}
			if _, err := r.RecentScans(ctx, 10); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, err := r.DetectionCountSince(ctx, time.Time{}); err != nil || n != writers*each {
		t.Errorf("%d detections, %v; want %d", n, err, writers*each)
	}
}

// TestHistoryCrash kills a writing process with SIGKILL and checks that the
// database opens, passes integrity_check, holds every scan the process
// reported as committed, and no scan without its detections.
func TestHistoryCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHistoryCrashHelper$")
	cmd.Env = append(os.Environ(), "AVFLEET_HISTORY_CRASH_HELPER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	committed := -1
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			committed, _ = strconv.Atoi(n)
			if committed >= 30 {
				break
			}
		}
	}
	if committed < 30 {
		t.Fatalf("helper stopped after %d commits", committed)
	}
	// While it is still writing, another process reads.
	r, err := OpenHistoryReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RecentScans(t.Context(), 5); err != nil {
		t.Errorf("read while another process writes: %v", err)
	}
	r.Close()
	cmd.Process.Kill()
	cmd.Wait()

	h, err := OpenHistory(path)
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer h.Close()
	var check string
	if err := h.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	scans, err := h.RecentScans(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(scans) < committed+1 {
		t.Errorf("%d scans after the crash, the helper had committed %d", len(scans), committed+1)
	}
	for _, s := range scans {
		dets, err := h.ScanDetections(t.Context(), s.ScanID)
		if err != nil || len(dets) != 3 {
			t.Errorf("scan %s has %d detections (%v), want 3: a transaction was torn", s.ScanID, len(dets), err)
		}
	}
}

// TestHistoryCrashHelper is the process TestHistoryCrash kills; it does
// nothing in a normal test run.
func TestHistoryCrashHelper(t *testing.T) {
	path := os.Getenv("AVFLEET_HISTORY_CRASH_HELPER")
	if path == "" {
		return
	}
	h, err := OpenHistory(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		id := "crash-" + strconv.Itoa(i)
		dets := []Detection{{ScanID: id, Path: "/a"}, {ScanID: id, Path: "/b"}, {ScanID: id, Path: "/c"}}
		if err := h.InsertScan(ctx, ScanSummary{ScanID: id, End: time.Now(), Paths: []string{strings.Repeat("/x", 500)}}, dets...); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("committed %d\n", i)
	}
}
