package updater

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/report"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recReloader records reloads and fails when told to.
type recReloader struct {
	mu    sync.Mutex
	calls []map[string]uint
	fail  error
}

func (r *recReloader) Reload(_ context.Context, want map[string]uint) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, want)
	if r.fail != nil {
		return -1, r.fail
	}
	return 10, nil
}

// events collects what the updater reports.
type events struct {
	mu  sync.Mutex
	evs []report.Event
}

func (e *events) Report(_ context.Context, ev report.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return nil
}

func (e *events) alertsFor(reason string) []report.Alert {
	var as []report.Alert
	for _, a := range e.alerts() {
		if a.Reason == reason {
			as = append(as, a)
		}
	}
	return as
}

func (e *events) alerts() []report.Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var as []report.Alert
	for _, ev := range e.evs {
		if a, ok := ev.(report.Alert); ok {
			as = append(as, a)
		}
	}
	return as
}

type harness struct {
	u      *Updater
	store  *Store
	mirror *fakeMirror
	rel    *recReloader
	ev     *events
	reg    *prometheus.Registry
	m      *Metrics
}

func newHarness(t *testing.T, mut func(*Options)) *harness {
	t.Helper()
	h := &harness{mirror: newFakeMirror(t), rel: &recReloader{}, ev: &events{}, reg: prometheus.NewRegistry()}
	var err error
	if h.store, err = OpenStore(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if h.m, err = NewMetrics(h.reg); err != nil {
		t.Fatal(err)
	}
	o := Options{Clients: []*Client{h.mirror.client(t)}, Store: h.store, Verifier: CVDVerifier{Trust: &cvd.Trust{}},
		Reloader: h.rel, Events: h.ev, Metrics: h.m, Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})), ChecksPerDay: 1, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	if mut != nil {
		mut(&o)
	}
	if h.u, err = New(o); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) installed(t *testing.T) map[string]uint {
	t.Helper()
	s, err := h.store.Current()
	if err != nil {
		t.Fatal(err)
	}
	return s.Versions()
}

func TestCycleFullThenCDiffs(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 3))
	res, err := h.u.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Updated || res.Methods["test"] != "full" || res.New["test"] != 3 {
		t.Fatalf("first cycle: %+v", res)
	}
	cur, _ := h.store.Current()
	if _, err := os.Stat(filepath.Join(cur.Dir, "test.cvd")); err != nil {
		t.Fatalf("official CVD installed as such: %v", err)
	}

	h.mirror.publish(chainSpec(t, 6, 2))
	res, err = h.u.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Methods["test"] != "cdiff" || res.Old["test"] != 3 || res.New["test"] != 6 {
		t.Fatalf("second cycle: %+v", res)
	}
	var want int64
	for v := 4; v <= 6; v++ {
		want += int64(len(testdata(t, "test-"+itoa(v)+".cdiff")))
	}
	if res.Bytes != want {
		t.Errorf("downloaded %d bytes, want the three cdiffs' %d", res.Bytes, want)
	}
	if n := h.mirror.hitCount("/test.cvd"); n != 1 {
		t.Errorf("full database fetched %d times, want once (the first install)", n)
	}
	if got := h.installed(t)["test"]; got != 6 {
		t.Errorf("installed version %d, want 6", got)
	}
	cur, _ = h.store.Current()
	if cur.DBs["test"].Kind != cvd.KindCLD {
		t.Errorf("patched database installed as %s, want cld", cur.DBs["test"].Kind)
	}
	if got := testutil.ToFloat64(h.m.version.WithLabelValues("test")); got != 6 {
		t.Errorf("definitions_version = %v, want 6", got)
	}
	if got := testutil.ToFloat64(h.m.downloaded.WithLabelValues("cdiff")); got != float64(want) {
		t.Errorf("download_bytes_total{kind=cdiff} = %v, want %d", got, want)
	}
	if len(h.rel.calls) != 2 {
		t.Errorf("%d reloads, want 2", len(h.rel.calls))
	}
	// Nothing new: no set, no reload, result current.
	res, err = h.u.Cycle(context.Background())
	if err != nil || res.Updated || res.Methods["test"] != "current" {
		t.Fatalf("third cycle: %+v, %v", res, err)
	}
	if len(h.rel.calls) != 2 {
		t.Errorf("a reload without a change")
	}
	sets, _ := h.store.Sets()
	if len(sets) != 2 {
		t.Errorf("sets on disk %v, want current and previous only", sets)
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

func TestCycleRefusesTampered(t *testing.T) {
	tampered := func(b []byte) []byte {
		c := append([]byte(nil), b...)
		c[len(c)/2] ^= 0x55
		return c
	}
	cases := []struct {
		name       string
		spec       func(t *testing.T) dbSpec
		wantReason string
		wantCheck  string
	}{
		{"cvd body", func(t *testing.T) dbSpec {
			s := cvdSpec(t, 6)
			s.file = tampered(s.file)
			return s
		}, ReasonVerify, ""},
		{"cdiff and full", func(t *testing.T) dbSpec {
			s := chainSpec(t, 6, 4)
			s.file = tampered(s.file)
			s.cdiffs[5] = tampered(s.cdiffs[5])
			return s
		}, ReasonVerify, ""},
		{"html page", func(t *testing.T) dbSpec {
			s := cvdSpec(t, 6)
			s.file = []byte("<html><body>503 Service Unavailable</body></html>")
			return s
		}, ReasonVerify, string(cvd.CheckFormat)},
		{"older version claimed newer", func(t *testing.T) dbSpec {
			s := cvdSpec(t, 6)
			s.file = testdata(t, "test-5.cvd")
			return s
		}, ReasonVerify, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.mirror.publish(cvdSpec(t, 3))
			if _, err := h.u.Cycle(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.mirror.publish(tc.spec(t))
			_, err := h.u.Cycle(context.Background())
			if err == nil {
				t.Fatal("tampered database installed")
			}
			if r := reasonOf(err); r != tc.wantReason {
				t.Errorf("reason %q, want %q (err %v)", r, tc.wantReason, err)
			}
			if tc.wantCheck != "" && !strings.Contains(err.Error(), tc.wantCheck) {
				t.Errorf("error %q does not name check %q", err, tc.wantCheck)
			}
			if v := h.installed(t)["test"]; v != 3 {
				t.Errorf("installed %d after a refused update, want 3", v)
			}
			st := h.u.Status()
			if st.LastError == "" || st.Installed["test"] != 3 {
				t.Errorf("status %+v: want the error and version 3", st)
			}
			if got := testutil.ToFloat64(h.m.failures.WithLabelValues(tc.wantReason)); got != 1 {
				t.Errorf("update_failures_total{reason=%s} = %v", tc.wantReason, got)
			}
		})
	}
}

func TestCycleCDiffFallsBackToFull(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 3))
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := chainSpec(t, 6, 4)
	s.cdiffs[5] = append([]byte(nil), testdata(t, "test-4.cdiff")...) // wrong version in the chain
	h.mirror.publish(s)
	res, err := h.u.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Methods["test"] != "full" || res.New["test"] != 6 {
		t.Fatalf("%+v: want a full download of version 6", res)
	}
}

func TestCycleChecksumMismatch(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 3))
	h.mirror.replace("/test.cvd", testdata(t, "test-4.cvd"))
	_, err := h.u.Cycle(context.Background())
	if reasonOf(err) != ReasonChecksum {
		t.Fatalf("err %v (reason %s), want checksum", err, reasonOf(err))
	}
	if cur, _ := h.store.Current(); cur != nil {
		t.Fatalf("something installed: %+v", cur)
	}
}

func TestCycleUnreachable(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.srv.Close()
	_, err := h.u.Cycle(context.Background())
	if reasonOf(err) != ReasonUnreachable {
		t.Fatalf("err %v (reason %s), want unreachable", err, reasonOf(err))
	}
}

func TestCycleClientCertRequired(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 3))
	c := h.mirror.client(t)
	tr := c.http.Transport.(*http.Transport)
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.GetClientCertificate = nil
	if _, err := c.Manifest(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("manifest without a client certificate: %v", err)
	}
}

func TestCycleReloadFailureRestores(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 3))
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	before, _ := h.store.Current()
	h.rel.fail = errors.New("Database load failed: Malformed database")
	h.mirror.publish(chainSpec(t, 5, 4))
	_, err := h.u.Cycle(context.Background())
	if reasonOf(err) != ReasonReload || !strings.Contains(err.Error(), "put back the previous set") {
		t.Fatalf("err %v, want a reload failure that put the old set back", err)
	}
	after, _ := h.store.Current()
	if after.Name != before.Name || after.Versions()["test"] != 3 {
		t.Fatalf("db points to %s (%v), want %s", after.Name, after.Versions(), before.Name)
	}
	last := h.rel.calls[len(h.rel.calls)-1]
	if last["test"] != 3 {
		t.Errorf("last reload asked for %v, want the old set", last)
	}
	h.rel.fail = nil
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatalf("retry after clamd recovered: %v", err)
	}
	if v := h.installed(t)["test"]; v != 5 {
		t.Errorf("installed %d, want 5", v)
	}
}

func TestCycleAllowlist(t *testing.T) {
	const hash = "71E7B604D18AEFD839E51A39C88DF8383BB4C071DC31F87F00A2B5DF580D4495"
	h := newHarness(t, func(o *Options) {
		o.Allowlist = Allowlist{Signatures: []string{"Eicar-Test-Signature", "Eicar-Test-Signature"}, SHA256: []string{hash + ":544"}}
	})
	h.mirror.publish(cvdSpec(t, 3))
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	cur, _ := h.store.Current()
	if string(cur.Ignore) != "Eicar-Test-Signature\n" {
		t.Errorf("avfleet.ign2 = %q", cur.Ignore)
	}
	if want := strings.ToLower(hash) + ":544:avfleet.allowlist.1\n"; string(cur.Allow) != want {
		t.Errorf("avfleet.sfp = %q, want %q", cur.Allow, want)
	}
	// Clearing the allowlist makes a new set without the files, same versions.
	if err := h.u.SetAllowlist(Allowlist{}); err != nil {
		t.Fatal(err)
	}
	res, err := h.u.Cycle(context.Background())
	if err != nil || !res.Updated {
		t.Fatalf("%+v %v: want a new set", res, err)
	}
	cur, _ = h.store.Current()
	for _, f := range []string{IgnoreFile, AllowFile} {
		if _, err := os.Stat(filepath.Join(cur.Dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still in the set (clamd refuses an empty .sfp)", f)
		}
	}
	if h.mirror.hitCount("/test.cvd") != 1 {
		t.Errorf("an allowlist change downloaded the database again")
	}
}

func TestCycleDowngradeOnlyOnRollback(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 5))
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mirror.publish(cvdSpec(t, 4))
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := h.installed(t)["test"]; v != 5 {
		t.Fatalf("downgraded to %d without a rollback", v)
	}
	s := cvdSpec(t, 4)
	s.rolledBack = true
	h.mirror.publish(s)
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := h.installed(t)["test"]; v != 4 {
		t.Fatalf("installed %d after the mirror's rollback, want 4", v)
	}
}

func TestCycleKeepsDatabaseGoneFromManifest(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 3))
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mirror.publish()
	res, err := h.u.Cycle(context.Background())
	if err != nil || res.Updated {
		t.Fatalf("%+v %v", res, err)
	}
	if v := h.installed(t)["test"]; v != 3 {
		t.Fatalf("installed %v", h.installed(t))
	}
}

func TestFirstCycleEmptyMirror(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish()
	_, err := h.u.Cycle(context.Background())
	if reasonOf(err) != ReasonMirror || !strings.Contains(err.Error(), "no databases") {
		t.Fatalf("err %v", err)
	}
}

// TestRunWatch: with one poll a day, a new set on the mirror reaches the node
// through the watch within a second or two.
func TestRunWatch(t *testing.T) {
	h := newHarness(t, nil)
	h.mirror.publish(cvdSpec(t, 3))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.u.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, 5*time.Second, func() bool { return h.u.Status().Installed["test"] == 3 })
	start := time.Now()
	h.mirror.publish(chainSpec(t, 6, 4))
	waitFor(t, 5*time.Second, func() bool { return h.u.Status().Installed["test"] == 6 })
	t.Logf("watch to installed: %s", time.Since(start))
	if n := h.mirror.hitCount("/test.cvd"); n != 1 {
		t.Errorf("full database fetched %d times", n)
	}
}

// TestRunMirrorDown: the mirror goes away; the node keeps its set, retries
// with backoff, raises the stale alert for reason "mirror" after StaleAfter
// and resolves it when the mirror is back and the update lands. ClamAV's
// test databases were built in 2021, so the "age" alert fires at the first
// install and stays: the two reasons come and go independently.
func TestRunMirrorDown(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.StaleAfter = 1500 * time.Millisecond
		o.PollInterval = 300 * time.Millisecond
	})
	h.mirror.publish(cvdSpec(t, 3))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.u.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, 5*time.Second, func() bool { return h.u.Status().Installed["test"] == 3 })
	waitFor(t, 5*time.Second, func() bool { return len(h.ev.alertsFor(StaleAge)) == 1 })
	if a := h.ev.alertsFor(StaleAge)[0]; a.State != report.AlertFiring || a.Age < 365*24*time.Hour ||
		!strings.Contains(a.Message, "test version 3, built 2021-") {
		t.Fatalf("age alert for the 2021 test database: %+v", a)
	}
	if n := len(h.ev.alertsFor(StaleMirror)); n != 0 {
		t.Fatalf("%d mirror alerts while the mirror is up", n)
	}
	h.mirror.setDown(true)
	downAt := time.Now()
	waitFor(t, 10*time.Second, func() bool { return len(h.ev.alertsFor(StaleMirror)) == 1 })
	a := h.ev.alertsFor(StaleMirror)[0]
	if a.Name != report.AlertStaleDefinitions || a.State != report.AlertFiring || !strings.Contains(a.Message, "last confirmed current") {
		t.Fatalf("alert %+v", a)
	}
	if el := time.Since(downAt); el < 1500*time.Millisecond-200*time.Millisecond {
		t.Errorf("stale alert after %s, before stale_after", el)
	}
	if testutil.ToFloat64(h.m.staleReason.WithLabelValues(StaleMirror)) != 1 || testutil.ToFloat64(h.m.stale) != 1 {
		t.Error("definitions_stale_reason{reason=mirror} or definitions_stale is not 1")
	}
	if st := h.u.Status(); !st.Stale || strings.Join(st.StaleReasons, ",") != "age,mirror" {
		t.Errorf("status while down: stale %v %v", st.Stale, st.StaleReasons)
	}
	if v := h.installed(t)["test"]; v != 3 {
		t.Fatalf("installed set changed while the mirror was down: %v", v)
	}
	fails := testutil.ToFloat64(h.m.failures.WithLabelValues(ReasonMirror)) + testutil.ToFloat64(h.m.failures.WithLabelValues(ReasonUnreachable))
	if fails < 2 {
		t.Errorf("%v failed attempts while down, want retries", fails)
	}
	h.mirror.publish(chainSpec(t, 6, 4))
	h.mirror.setDown(false)
	waitFor(t, 10*time.Second, func() bool { return h.u.Status().Installed["test"] == 6 })
	waitFor(t, 5*time.Second, func() bool { return len(h.ev.alertsFor(StaleMirror)) == 2 })
	if a := h.ev.alertsFor(StaleMirror)[1]; a.State != report.AlertResolved {
		t.Fatalf("second alert %+v, want resolved", a)
	}
	if testutil.ToFloat64(h.m.staleReason.WithLabelValues(StaleMirror)) != 0 {
		t.Error("definitions_stale_reason{reason=mirror} is not back to 0")
	}
	// test-6 was built in 2021 too: still stale by age, and said once only.
	if n := len(h.ev.alertsFor(StaleAge)); n != 1 || testutil.ToFloat64(h.m.stale) != 1 ||
		testutil.ToFloat64(h.m.staleReason.WithLabelValues(StaleAge)) != 1 {
		t.Errorf("age: %d alerts, stale %v", n, testutil.ToFloat64(h.m.stale))
	}
}

// orgDB builds database acme at version v with the build time given, signed
// with key (a node trusts it through Trust.Keys, as with trust.cvd_keys).
func orgDB(t *testing.T, key *rsa.PrivateKey, v uint, built time.Time) dbSpec {
	t.Helper()
	dir := t.TempDir()
	hdb := filepath.Join(dir, "acme.hdb")
	if err := os.WriteFile(hdb, []byte(fmt.Sprintf("44d88612fea8a8f36de82e1278abb02f:68:Acme.Test-%d\n", v)), 0o644); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := cvd.Build(&b, cvd.BuildOptions{Name: "acme", Version: v, Key: key, Files: []string{hdb}, Time: built}); err != nil {
		t.Fatal(err)
	}
	return dbSpec{name: "acme", version: v, kind: "cvd", file: b.Bytes(), signedBy: "key"}
}

// TestStaleByAge: a node in sync with its mirror is still stale when what
// the mirror serves is older than StaleAfter (an unfed mirror), and the
// alert resolves when younger definitions arrive. The mirror reason never
// fires: the node confirms with the mirror every cycle.
func TestStaleByAge(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		staleAfter time.Duration
		built      time.Duration // before now
		stale      bool
	}{
		{"older than stale_after", time.Hour, 2 * time.Hour, true},
		{"younger than stale_after", 3 * time.Hour, 2 * time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) {
				o.StaleAfter = c.staleAfter
				o.Verifier = CVDVerifier{Trust: &cvd.Trust{Keys: []*rsa.PublicKey{&key.PublicKey}}}
			})
			h.mirror.publish(orgDB(t, key, 1, time.Now().Add(-c.built)))
			if _, err := h.u.Cycle(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := h.u.Status()
			if st.Installed["acme"] != 1 || st.Stale != c.stale || time.Since(st.BuiltAt) < c.built-time.Minute {
				t.Fatalf("status %+v", st)
			}
			if got := testutil.ToFloat64(h.m.staleReason.WithLabelValues(StaleAge)); got != b2f(c.stale) {
				t.Errorf("definitions_stale_reason{reason=age} = %v", got)
			}
			if got := testutil.ToFloat64(h.m.stale); got != b2f(c.stale) {
				t.Errorf("definitions_stale = %v", got)
			}
			if !c.stale {
				if as := h.ev.alerts(); len(as) != 0 {
					t.Fatalf("alerts %+v", as)
				}
				return
			}
			as := h.ev.alertsFor(StaleAge)
			if len(as) != 1 || as[0].State != report.AlertFiring || as[0].Age < c.built-time.Minute ||
				!strings.Contains(as[0].Message, "acme version 1") || !strings.Contains(as[0].Message, "more than stale_after 1h;") {
				t.Fatalf("age alerts %+v", as)
			}
			// Still stale at the next check: no second alert.
			if _, err := h.u.Cycle(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(h.ev.alerts()); n != 1 {
				t.Fatalf("%d alerts after a second cycle, want the one", n)
			}
			// The mirror is fed: version 2, built now.
			h.mirror.publish(orgDB(t, key, 2, time.Now()))
			if _, err := h.u.Cycle(context.Background()); err != nil {
				t.Fatal(err)
			}
			as = h.ev.alerts()
			if len(as) != 2 || as[1].Reason != StaleAge || as[1].State != report.AlertResolved {
				t.Fatalf("alerts %+v, want the age alert resolved", as)
			}
			if st := h.u.Status(); st.Stale || testutil.ToFloat64(h.m.stale) != 0 {
				t.Errorf("still stale after fresh definitions: %+v", st)
			}
			if n := len(h.ev.alertsFor(StaleMirror)); n != 0 {
				t.Errorf("%d mirror alerts while in sync", n)
			}
		})
	}
}

// TestDefinitionsAge: daily dates the official set; without it, the newest
// database does; headers without a build time are left out.
func TestDefinitionsAge(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	db := func(name string, v uint, built time.Time) *Installed {
		return &Installed{Name: name, Header: cvd.Header{Version: v, Time: built}}
	}
	set := func(dbs ...*Installed) *Set {
		s := &Set{DBs: map[string]*Installed{}}
		for _, d := range dbs {
			s.DBs[d.Name] = d
		}
		return s
	}
	for _, c := range []struct {
		name string
		set  *Set
		want defsAge
	}{
		{"nothing installed", nil, defsAge{none: true}},
		{"empty set", set(), defsAge{none: true}},
		{"official: daily, even when bytecode is newer", set(db("main", 62, t0.AddDate(-2, 0, 0)), db("daily", 27900, t0),
			db("bytecode", 336, t0.Add(time.Hour))), defsAge{built: t0, from: "daily", ver: 27900}},
		{"official: an old daily is old, whatever main is", set(db("main", 63, t0), db("daily", 27000, t0.AddDate(-1, 0, 0))),
			defsAge{built: t0.AddDate(-1, 0, 0), from: "daily", ver: 27000}},
		{"no daily: the newest", set(db("acme", 4, t0.AddDate(0, -1, 0)), db("test", 6, t0), db("old", 1, t0.AddDate(-3, 0, 0))),
			defsAge{built: t0, from: "test", ver: 6}},
		{"daily without build time: the newest", set(db("daily", 1, time.Time{}), db("main", 2, t0)), defsAge{built: t0, from: "main", ver: 2}},
		{"no build time anywhere", set(db("acme", 1, time.Time{})), defsAge{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := definitionsAge(c.set); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBackoffBounds(t *testing.T) {
	u := &Updater{o: Options{BackoffMin: time.Second, BackoffMax: 8 * time.Second}}
	for n := 1; n < 10; n++ {
		d := u.backoff(n)
		hi := min(time.Second<<(n-1), 8*time.Second)
		if d < hi/2 || d > hi {
			t.Errorf("backoff(%d) = %s, want in [%s, %s]", n, d, hi/2, hi)
		}
	}
}

// tWriter sends log lines to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestCycleSignFiles: with trust.sign_certs_dir the agent fetches the .sign
// beside every file and the verifier checks it; with require_sign a file
// without one is refused even though its ClamAV signatures are fine.
func TestCycleSignFiles(t *testing.T) {
	certs := t.TempDir()
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), testdata(t, "clamav-test-ca.crt"), 0o644); err != nil {
		t.Fatal(err)
	}
	roots, err := cvd.LoadSignRoots(certs)
	if err != nil {
		t.Fatal(err)
	}
	trust := &cvd.Trust{SignRoots: roots, RequireSign: true}
	h := newHarness(t, func(o *Options) {
		o.Verifier = CVDVerifier{Trust: trust}
		o.FetchSign = true
	})
	s3 := cvdSpec(t, 3)
	s3.signs = map[string][]byte{"/test.cvd": testdata(t, "test-3.cvd.sign")}
	h.mirror.publish(s3)
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	s6 := chainSpec(t, 6, 4)
	s6.signs = map[string][]byte{}
	for v := 4; v <= 6; v++ {
		p := "/test-" + itoa(v) + ".cdiff"
		s6.signs[p] = testdata(t, "test-"+itoa(v)+".cdiff.sign")
	}
	h.mirror.publish(s6)
	res, err := h.u.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Methods["test"] != "cdiff" || res.New["test"] != 6 {
		t.Fatalf("%+v", res)
	}
	if got := testutil.ToFloat64(h.m.downloaded.WithLabelValues("sign")); got == 0 {
		t.Error("no .sign bytes downloaded")
	}

	// cdiffs without their .sign are refused under require_sign.
	h3 := newHarness(t, func(o *Options) {
		o.Verifier = CVDVerifier{Trust: trust}
		o.FetchSign = true
	})
	h3.mirror.publish(s3)
	if _, err := h3.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	h3.mirror.publish(chainSpec(t, 6, 4))
	if _, err = h3.u.Cycle(context.Background()); reasonOf(err) != ReasonVerify || !strings.Contains(err.Error(), "test-4.cdiff.sign is missing") {
		t.Fatalf("cdiffs without .sign: %v", err)
	}

	// A mirror that drops the .sign files cannot get past require_sign.
	h2 := newHarness(t, func(o *Options) {
		o.Verifier = CVDVerifier{Trust: trust}
		o.FetchSign = true
	})
	h2.mirror.publish(cvdSpec(t, 3))
	_, err = h2.u.Cycle(context.Background())
	if reasonOf(err) != ReasonVerify || !strings.Contains(err.Error(), string(cvd.CheckSign)) {
		t.Fatalf("err %v: want a refusal by the sign check", err)
	}
}

// TestCycleNoSignWithoutCerts: without sign_certs_dir the .sign files are not
// fetched at all (they would be passed over unchecked and are bigger than a cdiff).
func TestCycleNoSignWithoutCerts(t *testing.T) {
	h := newHarness(t, nil)
	s := chainSpec(t, 3, 2)
	s.signs = map[string][]byte{"/test.cvd": testdata(t, "test-3.cvd.sign")}
	h.mirror.publish(s)
	if _, err := h.u.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.mirror.hitCount("/test-3.cvd.sign"); n != 0 {
		t.Errorf(".sign fetched %d times without sign_certs_dir", n)
	}
}

// TestCyclePartialFailure: one database refused does not hold back another:
// the good one is installed, the cycle still fails and says which.
func TestCyclePartialFailure(t *testing.T) {
	h := newHarness(t, nil)
	bad := cvdSpec(t, 4)
	bad.name = "other"
	bad.file = append([]byte(nil), bad.file...)
	bad.file[len(bad.file)-10] ^= 1
	h.mirror.publish(cvdSpec(t, 3), bad)
	res, err := h.u.Cycle(context.Background())
	if err == nil || !strings.Contains(err.Error(), "database other version 4") || reasonOf(err) != ReasonVerify {
		t.Fatalf("err %v", err)
	}
	if !res.Updated || res.New["test"] != 3 {
		t.Fatalf("%+v: the good database was not installed", res)
	}
	if st := h.u.Status(); st.Installed["test"] != 3 || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
	if _, ok := h.installed(t)["other"]; ok {
		t.Error("the refused database was installed")
	}
}
