package upstream_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avfleet/avfleet/internal/mirror/upstream"
)

// A 429 (Retry-After honoured, else 4 h) or 403 (24 h) puts the upstream URL
// on a cool-down kept in state.db: the next check, and a check after a
// restart (new Store and Syncer on the same data_dir), make no request until
// it ends; `mirror status` shows it; after it, sync resumes.
func TestSyncCooldown(t *testing.T) {
	date := time.Now().Add(90 * time.Minute).UTC().Truncate(time.Second)
	cases := []struct {
		name       string
		code       int
		retryAfter string
		wait       time.Duration // from the request; 0: until date
	}{
		{"429 Retry-After seconds", http.StatusTooManyRequests, "3600", time.Hour},
		{"429 Retry-After date", http.StatusTooManyRequests, date.Format(http.TimeFormat), 0},
		{"429 without Retry-After", http.StatusTooManyRequests, "", 4 * time.Hour},
		{"429 Retry-After garbage", http.StatusTooManyRequests, "soon", 4 * time.Hour},
		{"403", http.StatusForbidden, "", 24 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st := newStore(t, dir, "test-1.cvd")
			before := servedHash(t, dir)
			up := newFakeUpstream(t, false, stdFiles(t))
			up.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.code)
				return true
			})
			reg := prometheus.NewRegistry()
			s := newSyncer(t, st, up, syncerOpts{reg: reg})
			start := time.Now()
			r := syncOnce(t, s)
			end := time.Now()
			// The cool-down ends wait after the 429/403 arrived (between start
			// and end), stored in whole seconds; or at the date given.
			lo, hi := start.Add(tc.wait).Add(-time.Second), end.Add(tc.wait)
			if tc.wait == 0 {
				lo, hi = date, date
				tc.wait = time.Until(date)
			}
			if r.Result != upstream.ResultCooldown || !strings.Contains(r.Error, fmt.Sprint(tc.code)) {
				t.Fatalf("result %+v, want cooldown naming %d", r, tc.code)
			}
			if n := len(up.requests()); n != 1 {
				t.Fatalf("%d requests, want 1 (nothing after the %d)", n, tc.code)
			}
			c, active, err := st.State().Cooldown(up.srv.URL, time.Now())
			if err != nil || !active {
				t.Fatalf("cool-down in state.db: %+v active=%v err=%v", c, active, err)
			}
			if c.Until.Before(lo.Truncate(time.Second)) || c.Until.After(hi) {
				t.Fatalf("cool-down until %s, want between %s and %s", c.Until, lo, hi)
			}
			left := metricValue(t, reg, "avfleet_mirror_sync_cooldown_seconds", map[string]string{"upstream": up.srv.URL})
			if want := time.Until(hi).Seconds(); left < want-30 || left > want+1 {
				t.Errorf("avfleet_mirror_sync_cooldown_seconds = %v, want about %v", left, want)
			}

			r = syncOnce(t, s)
			if r.Result != upstream.ResultCooldown || len(up.requests()) != 1 {
				t.Fatalf("second check: %+v after %d requests; want cooldown and no new request", r, len(up.requests()))
			}

			// Restart: a new Store and Syncer on the same data_dir.
			st.Close()
			st2 := newStore(t, dir)
			s2 := newSyncer(t, st2, up, syncerOpts{})
			r = syncOnce(t, s2)
			if r.Result != upstream.ResultCooldown || len(up.requests()) != 1 {
				t.Fatalf("after restart: %+v after %d requests; want cooldown and no new request", r, len(up.requests()))
			}
			status, err := st2.Status()
			if err != nil {
				t.Fatal(err)
			}
			if len(status.Cooldowns) != 1 || status.Cooldowns[0].Scope != up.srv.URL || !strings.Contains(status.Cooldowns[0].Reason, fmt.Sprint(tc.code)) {
				t.Errorf("status cool-downs %+v, want one for %s naming %d", status.Cooldowns, up.srv.URL, tc.code)
			}
			if len(status.Databases) != 1 || status.Databases[0].LastSync == nil || status.Databases[0].LastSync.Result != upstream.ResultCooldown {
				t.Errorf("status databases %+v, want test with last sync cooldown", status.Databases)
			}
			if got := servedHash(t, dir); got != before {
				t.Errorf("served set changed during the cool-down")
			}

			// After the cool-down, sync resumes.
			up.setOverride(nil)
			later := func() time.Time { return time.Now().Add(tc.wait + time.Minute) }
			r = syncOnce(t, newSyncer(t, st2, up, syncerOpts{now: later}))
			if r.Result != upstream.ResultUpdated {
				t.Fatalf("after the cool-down: %+v, want updated", r)
			}
		})
	}
}

// A 429 in the middle of a cdiff chain keeps what was accepted and stops.
func TestSyncCooldownMidChain(t *testing.T) {
	dir := t.TempDir()
	st := newStore(t, dir, "test-1.cvd")
	up := newFakeUpstream(t, false, stdFiles(t))
	up.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/test-4.cdiff" {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	})
	r := syncOnce(t, newSyncer(t, st, up, syncerOpts{}))
	if r.Result != upstream.ResultUpdated || !strings.Contains(r.Error, "429") {
		t.Fatalf("result %+v, want updated (part of the way) with the 429 as error", r)
	}
	if v, _ := served(t, st); v != 3 {
		t.Fatalf("served version %d, want 3 (cdiffs before the 429)", v)
	}
	for _, q := range up.requests() {
		if q.Path == "/test.cvd" && q.Range == "" || q.Path == "/test-5.cdiff" {
			t.Errorf("asked for %s after the 429", q.Path)
		}
	}
}

// With two upstream URLs, one on cool-down is skipped and the other used.
func TestSyncCooldownOtherURL(t *testing.T) {
	dir := t.TempDir()
	st := newStore(t, dir, "test-1.cvd")
	blocked := newFakeUpstream(t, false, stdFiles(t))
	blocked.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusForbidden)
		return true
	})
	good := newFakeUpstream(t, false, stdFiles(t))
	s := newSyncer(t, st, nil, syncerOpts{urls: []string{blocked.srv.URL, good.srv.URL}})
	r := syncOnce(t, s)
	if r.Result != upstream.ResultUpdated || !strings.Contains(r.Error, "403") {
		t.Fatalf("result %+v, want updated from the second URL, with the 403 noted", r)
	}
	n := len(blocked.requests())
	good.setFile("test.cvd", nil) // would fail the header check if asked
	r = syncOnce(t, s)
	if len(blocked.requests()) != n {
		t.Errorf("the URL on cool-down was asked again")
	}
	if r.Result != upstream.ResultFailed || !strings.Contains(r.Error, "404") {
		t.Errorf("second check %+v, want failed by the other URL's 404", r)
	}
}
