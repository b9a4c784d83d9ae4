package upstream_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror/upstream"
	"github.com/avfleet/avfleet/internal/testutil"
	"github.com/avfleet/avfleet/internal/version"
)

func cdiffTotal(t *testing.T, from, to int) int64 {
	var n int64
	for v := from; v <= to; v++ {
		n += fileSize(t, fmt.Sprintf("test-%d.cdiff", v))
	}
	return n
}

func headerTime(t *testing.T, name string) time.Time {
	b, err := os.ReadFile(filepath.Join(testutil.ClamAVTestdata(t), name))
	if err != nil {
		t.Fatal(err)
	}
	h, err := cvd.ParseHeader(b[:cvd.HeaderSize])
	if err != nil {
		t.Fatal(err)
	}
	return h.Time
}

// metricValue reads one sample from a registry; -1 when absent.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

// From version 1 to 6 by cdiffs: the only bytes of database files fetched are
// the 512-byte header check and the five cdiffs, never a whole CVD; every
// .sign is fetched beside its cdiff (and verified against the test CA); the
// next check is one conditional request answered 304.
func TestSyncCDiffChain(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			dir := t.TempDir()
			st := newStore(t, dir, "test-1.cvd")
			up := newFakeUpstream(t, useTLS, stdFiles(t))
			reg := prometheus.NewRegistry()
			s := newSyncer(t, st, up, syncerOpts{reg: reg})

			r := syncOnce(t, s)
			if r.Result != upstream.ResultUpdated || r.UpstreamVersion != 6 || r.Error != "" {
				t.Fatalf("result %+v, want updated to 6 without error", r)
			}
			if v, kind := served(t, st); v != 6 || kind != "cld" {
				t.Fatalf("served version %d kind %s, want 6 cld", v, kind)
			}
			var dbBytes, signBytes int64
			paths := map[string]int{}
			reqs := up.requests()
			for _, q := range reqs {
				paths[q.Path]++
				if q.UA != version.UserAgent() {
					t.Errorf("%s sent User-Agent %q, want %q", q.Path, q.UA, version.UserAgent())
				}
				if strings.HasSuffix(q.Path, ".sign") {
					signBytes += q.Bytes
				} else {
					dbBytes += q.Bytes
				}
				if q.Path == "/test.cvd" {
					if q.Range != "bytes=0-511" || q.Status != http.StatusPartialContent {
						t.Errorf("GET /test.cvd with Range %q answered %d: the whole CVD was asked for", q.Range, q.Status)
					}
					if want := headerTime(t, "test-1.cvd").UTC().Format(http.TimeFormat); q.IMS != want {
						t.Errorf("header check If-Modified-Since %q, want test-1's build time %q", q.IMS, want)
					}
				}
			}
			for v := 2; v <= 6; v++ {
				for _, p := range []string{fmt.Sprintf("/test-%d.cdiff", v), fmt.Sprintf("/test-%d.cdiff.sign", v)} {
					if paths[p] != 1 {
						t.Errorf("%s requested %d times, want once", p, paths[p])
					}
				}
			}
			if want := 512 + cdiffTotal(t, 2, 6); dbBytes != want {
				t.Errorf("database bytes fetched %d, want %d (header + cdiffs 2..6)", dbBytes, want)
			}
			if cvdSize := fileSize(t, "test-6.cvd"); dbBytes >= cvdSize {
				t.Errorf("fetched %d bytes of database files, not less than the %d of test-6.cvd", dbBytes, cvdSize)
			}
			t.Logf("fetched %d bytes of database files (test-6.cvd is %d) and %d bytes of .sign in %d requests",
				dbBytes, fileSize(t, "test-6.cvd"), signBytes, len(reqs))

			r = syncOnce(t, s)
			if r.Result != upstream.ResultCurrent {
				t.Fatalf("second check %+v, want current", r)
			}
			more := up.requests()[len(reqs):]
			if len(more) != 1 || more[0].Status != http.StatusNotModified || more[0].IMS == "" {
				t.Fatalf("second check made %+v, want one conditional request answered 304", more)
			}
			res, err := st.State().SyncResults()
			if err != nil {
				t.Fatal(err)
			}
			if got := res["test"]; got.Result != upstream.ResultCurrent || got.UpstreamVersion != 6 {
				t.Errorf("state.db sync result %+v, want current at 6", got)
			}
			for result, want := range map[string]float64{"updated": 1, "current": 1} {
				if got := metricValue(t, reg, "avfleet_mirror_sync_checks_total", map[string]string{"database": "test", "result": result}); got != want {
					t.Errorf("avfleet_mirror_sync_checks_total{result=%s} = %v, want %v", result, got, want)
				}
			}
			if got := metricValue(t, reg, "avfleet_mirror_sync_upstream_version", map[string]string{"database": "test"}); got != 6 {
				t.Errorf("avfleet_mirror_sync_upstream_version = %v, want 6", got)
			}
			if got := metricValue(t, reg, "avfleet_mirror_sync_bytes_total", map[string]string{"kind": "cdiff"}); got != float64(cdiffTotal(t, 2, 6)) {
				t.Errorf("avfleet_mirror_sync_bytes_total{kind=cdiff} = %v, want %d", got, cdiffTotal(t, 2, 6))
			}
		})
	}
}

// With the DNS TXT record configured, the version comes from DNS: no header
// check is made, and a check that finds the mirror current makes no HTTP
// request at all. A record older than 12 h is not trusted.
func TestSyncDNSRecord(t *testing.T) {
	dir := t.TempDir()
	st := newStore(t, dir, "test-1.cvd")
	up := newFakeUpstream(t, false, stdFiles(t))
	res := &fakeResolver{}
	now := time.Now()
	res.set("current.cvd.clamav.net", fmt.Sprintf("1.4.3:62:27480:%d:0:90:0:339", now.Unix()))
	res.set("test.cvd.clamav.net", fmt.Sprintf("6:%d", now.Unix()))
	s := newSyncer(t, st, up, syncerOpts{dnsTXT: "current.cvd.clamav.net", resolver: res})

	r := syncOnce(t, s)
	if r.Result != upstream.ResultUpdated || r.UpstreamVersion != 6 {
		t.Fatalf("result %+v, want updated to 6", r)
	}
	reqs := up.requests()
	for _, q := range reqs {
		if q.Path == "/test.cvd" {
			t.Errorf("GET /test.cvd (Range %q) although DNS gave the version", q.Range)
		}
	}
	if want := []string{"current.cvd.clamav.net", "test.cvd.clamav.net"}; fmt.Sprint(res.lookups) != fmt.Sprint(want) {
		t.Errorf("DNS lookups %v, want %v", res.lookups, want)
	}

	r = syncOnce(t, s)
	if r.Result != upstream.ResultCurrent {
		t.Fatalf("second check %+v, want current", r)
	}
	if more := up.requests()[len(reqs):]; len(more) != 0 {
		t.Fatalf("a current check by DNS made HTTP requests: %+v", more)
	}

	res.set("test.cvd.clamav.net", fmt.Sprintf("7:%d", now.Add(-13*time.Hour).Unix()))
	n := len(up.requests())
	r = syncOnce(t, s)
	more := up.requests()[n:]
	if r.Result != upstream.ResultCurrent || len(more) != 1 || more[0].Path != "/test.cvd" || more[0].Range != "bytes=0-511" {
		t.Fatalf("stale DNS record: result %+v, requests %+v; want the header check to decide (current)", r, more)
	}
}

// A chain that is missing a cdiff, has a broken one, or is too long ends in
// the full CVD (and its .sign); cdiffs before the gap are kept.
func TestSyncFallsBackToFullCVD(t *testing.T) {
	flip := func(b []byte) []byte {
		c := append([]byte(nil), b...)
		c[len(c)/2] ^= 0x01
		return c
	}
	cases := []struct {
		name      string
		edit      func(f *fakeUpstream)
		maxCDiffs int
		reason    string
		asked     []string // cdiffs asked for
		notAsked  []string
	}{
		{name: "missing cdiff", reason: "missing_cdiff",
			edit:  func(f *fakeUpstream) { f.setFile("test-4.cdiff", nil); f.setFile("test-4.cdiff.sign", nil) },
			asked: []string{"/test-2.cdiff", "/test-3.cdiff", "/test-4.cdiff"}, notAsked: []string{"/test-5.cdiff"}},
		{name: "bit-flipped cdiff", reason: "rejected_cdiff",
			edit:  func(f *fakeUpstream) { f.setFile("test-3.cdiff", flip(f.files["test-3.cdiff"])) },
			asked: []string{"/test-2.cdiff", "/test-3.cdiff"}, notAsked: []string{"/test-4.cdiff"}},
		{name: "chain too long", reason: "chain_too_long", maxCDiffs: 4,
			notAsked: []string{"/test-2.cdiff"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st := newStore(t, dir, "test-1.cvd")
			up := newFakeUpstream(t, false, stdFiles(t))
			if tc.edit != nil {
				tc.edit(up)
			}
			reg := prometheus.NewRegistry()
			s := newSyncer(t, st, up, syncerOpts{reg: reg, maxCDiffs: tc.maxCDiffs})
			r := syncOnce(t, s)
			if r.Result != upstream.ResultUpdated {
				t.Fatalf("result %+v, want updated", r)
			}
			if v, kind := served(t, st); v != 6 || kind != "cvd" {
				t.Fatalf("served %d %s, want 6 from the full cvd", v, kind)
			}
			paths := map[string]int{}
			for _, q := range up.requests() {
				paths[q.Path+" "+q.Range]++
			}
			if paths["/test.cvd "] != 1 || paths["/test-6.cvd.sign "] != 1 {
				t.Errorf("requests %v: want one full GET /test.cvd and its /test-6.cvd.sign", paths)
			}
			for _, p := range tc.asked {
				if paths[p+" "] != 1 {
					t.Errorf("%s not asked for once: %v", p, paths)
				}
			}
			for _, p := range tc.notAsked {
				if paths[p+" "] != 0 {
					t.Errorf("%s asked for after the chain ended: %v", p, paths)
				}
			}
			if got := metricValue(t, reg, "avfleet_mirror_sync_full_downloads_total", map[string]string{"database": "test", "reason": tc.reason}); got != 1 {
				t.Errorf("full_downloads_total{reason=%s} = %v, want 1", tc.reason, got)
			}
		})
	}
}

// An empty mirror takes the full CVD with its .sign.
func TestSyncInitialFullCVD(t *testing.T) {
	dir := t.TempDir()
	st := newStore(t, dir)
	up := newFakeUpstream(t, true, stdFiles(t))
	r := syncOnce(t, newSyncer(t, st, up, syncerOpts{}))
	if r.Result != upstream.ResultUpdated {
		t.Fatalf("result %+v, want updated", r)
	}
	m, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Databases) != 1 || m.Databases[0].Version != 6 || m.Databases[0].Kind != "cvd" || m.Databases[0].SignPath != "/test-6.cvd.sign" {
		t.Fatalf("manifest %+v, want test 6 cvd with its .sign", m.Databases)
	}
	for _, q := range up.requests() {
		if strings.HasSuffix(q.Path, ".cdiff") {
			t.Errorf("an empty mirror asked for %s", q.Path)
		}
	}
}
