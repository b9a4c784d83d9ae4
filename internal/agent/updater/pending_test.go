package updater

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/report"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPendingMarker follows state_dir/pending through the ways a set is
// installed: a confirmed reload leaves none; NoReload (a first install,
// `agent update` with no clamd) leaves one naming the set and the one it
// replaced; ConfirmPending clears it; a failed reload that put the previous
// set back clears it; RollBackPending puts the previous set back and
// reports a failed update.
func TestPendingMarker(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	pending := func() *Pending {
		t.Helper()
		p, err := h.u.Pending()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	h.mirror.publish(cvdSpec(t, 3))
	if _, err := h.u.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	set3, _ := h.store.Current()
	if p := pending(); p != nil {
		t.Fatalf("pending %+v after a confirmed reload", p)
	}
	if _, err := os.Stat(h.store.path(pendingFile)); !os.IsNotExist(err) {
		t.Fatalf("marker left after a confirmed reload: %v", err)
	}

	// Installed without telling a clamd: unconfirmed until one loads it.
	h.u.SetReloader(NoReload{})
	h.mirror.publish(chainSpec(t, 4, 4))
	if _, err := h.u.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	set4, _ := h.store.Current()
	p := pending()
	if p == nil || p.Set != set4.Name || p.Prev != set3.Name || p.Time.IsZero() {
		t.Fatalf("pending %+v, want set %s prev %s", p, set4.Name, set3.Name)
	}
	if err := h.u.ConfirmPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	if p := pending(); p != nil {
		t.Fatalf("pending %+v after ConfirmPending", p)
	}

	// A failed reload: the previous set is back, nothing is unconfirmed.
	h.u.SetReloader(h.rel)
	h.rel.fail = errors.New("Database load failed: Malformed database")
	h.mirror.publish(chainSpec(t, 5, 4))
	if _, err := h.u.Cycle(ctx); reasonOf(err) != ReasonReload {
		t.Fatalf("cycle: %v", err)
	}
	if p := pending(); p != nil {
		t.Fatalf("pending %+v after a failed reload put the previous set back", p)
	}
	h.rel.fail = nil

	// Unconfirmed again, then clamd cannot load it: back to set 4.
	h.u.SetReloader(NoReload{})
	if _, err := h.u.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	set5, _ := h.store.Current()
	p = pending()
	if p == nil || p.Set != set5.Name || p.Prev != set4.Name {
		t.Fatalf("pending %+v, want set %s prev %s", p, set5.Name, set4.Name)
	}
	failuresBefore := testutil.ToFloat64(h.m.failures.WithLabelValues(ReasonReload))
	back, err := h.u.RollBackPending(ctx, p, errors.New("clamd (pid 9) exited before it answered: exit code 1"))
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := h.store.Current(); back == nil || back.Name != set4.Name || cur.Name != set4.Name {
		t.Fatalf("rolled back to %+v, db names %s; want %s", back, cur.Name, set4.Name)
	}
	if p := pending(); p != nil {
		t.Fatalf("pending %+v after the rollback", p)
	}
	st := h.u.Status()
	if st.Installed["test"] != 4 || !strings.Contains(st.LastError, "clamd could not load set "+set5.Name+" (test 5)") ||
		!strings.Contains(st.LastError, "exit code 1") || !strings.Contains(st.LastError, "put back the previous set "+set4.Name+" (test 4)") {
		t.Fatalf("status %+v", st)
	}
	h.ev.mu.Lock()
	last, _ := h.ev.evs[len(h.ev.evs)-1].(report.UpdateEvent)
	h.ev.mu.Unlock()
	if last.Result != report.UpdateFailed || last.OldVersions["test"] != 5 || last.NewVersions["test"] != 4 || last.Error != st.LastError {
		t.Fatalf("event %+v", last)
	}
	if got := testutil.ToFloat64(h.m.failures.WithLabelValues(ReasonReload)); got != failuresBefore+1 {
		t.Errorf("reload failures %v, want %v", got, failuresBefore+1)
	}
	// A second rollback of the same marker does nothing.
	if back, err := h.u.RollBackPending(ctx, p, errors.New("again")); back != nil || err != nil {
		t.Fatalf("second rollback: %+v, %v", back, err)
	}
	// The next cycle installs version 5 again (and a working clamd confirms it).
	h.u.SetReloader(h.rel)
	if _, err := h.u.Cycle(ctx); err != nil || h.installed(t)["test"] != 5 {
		t.Fatalf("cycle after the rollback: %v, installed %v", err, h.installed(t))
	}
}

// TestPendingStaleAndUnreadable: a marker of a switch that never happened
// is ignored; an unreadable one makes the set db names unconfirmed, with
// prev as the way back; a first install has nowhere to go back to.
func TestPendingStaleAndUnreadable(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Reloader = NoReload{} })
	ctx := context.Background()
	h.mirror.publish(cvdSpec(t, 3))
	if _, err := h.u.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := h.u.Pending()
	if err != nil || first == nil || first.Prev != "" {
		t.Fatalf("first install: pending %+v, %v", first, err)
	}
	if back, err := h.u.RollBackPending(ctx, first, errors.New("exit code 1")); back != nil || err == nil || !strings.Contains(err.Error(), "no previous set to go back to") {
		t.Fatalf("rollback of a first install: %+v, %v", back, err)
	}
	h.mirror.publish(chainSpec(t, 4, 4))
	if _, err := h.u.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	cur, _ := h.store.Current()
	prev, _ := h.store.Previous()

	// The agent died after writing the marker, before switching db.
	if err := os.WriteFile(h.store.path(pendingFile), []byte(`{"set":"999999","prev":"`+cur.Name+`","time":"2025-01-01T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := h.u.Pending(); p != nil || err != nil {
		t.Fatalf("stale marker: %+v, %v", p, err)
	}
	for _, bad := range []string{"", "{", `{"set":"../../etc","prev":""}`, `{"set":"000002","extra":1}`} {
		os.WriteFile(h.store.path(pendingFile), []byte(bad), 0o644)
		p, err := h.u.Pending()
		if err == nil || p == nil || p.Set != cur.Name || p.Prev != prev.Name {
			t.Errorf("marker %q: %+v, %v; want set %s prev %s and an error", bad, p, err, cur.Name, prev.Name)
		}
	}
}

func FuzzParsePending(f *testing.F) {
	f.Add([]byte(`{"set":"000012","prev":"000011","time":"2025-06-30T12:00:00Z"}` + "\n"))
	f.Add([]byte(`{"set":"000001","prev":"","time":"2025-06-30T12:00:00.123456789Z"}`))
	f.Add([]byte(`{"set":"../x"}`))
	f.Add([]byte(`{"set":"1"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePending(b)
		if err != nil {
			return
		}
		if !setName(p.Set) || (p.Prev != "" && !setName(p.Prev)) {
			t.Fatalf("accepted %+v", p)
		}
		if strings.ContainsAny(p.Set+p.Prev, "/.\\") {
			t.Fatalf("a set name with a path character: %+v", p)
		}
	})
}
