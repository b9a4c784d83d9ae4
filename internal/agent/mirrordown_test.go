package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestAgentMirrorDown: the mirror goes away. clamd keeps running on the last
// good set, the agent retries with backoff, raises the stale alert for
// reason "mirror" after stale_after (3 s here) and, when the mirror comes
// back with new definitions, installs them and resolves it. ClamAV's test
// databases were built in 2021: the "age" reason holds from the start and
// stays, and avfleet_agent_definitions_stale with it.
func TestAgentMirrorDown(t *testing.T) {
	certs := pki(t, "node1")
	data := t.TempDir()
	addr := freePort(t)
	m := startMirror(t, certs, data, addr)
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", addr)
	cfg.Report.StaleAfter = config.Duration(3 * time.Second)
	a := startAgent(t, cfg, func(o *Options) { o.PollInterval = 500 * time.Millisecond })
	a.waitReady(t, 30*time.Second)
	stale := func(reason string) float64 {
		return metric(t, a.reg, "avfleet_agent_definitions_stale_reason", "reason="+reason)
	}
	eventually(t, 5*time.Second, "stale by age (test databases from 2021)", func() bool { return stale("age") == 1 })
	if stale("mirror") != 0 {
		t.Fatal("stale by mirror while the mirror is up")
	}

	m.stop()
	down := time.Now()
	fails := func() float64 {
		return metric(t, a.reg, "avfleet_agent_update_failures_total", "reason=unreachable")
	}
	eventually(t, 10*time.Second, "stale alert", func() bool { return stale("mirror") == 1 })
	if metric(t, a.reg, "avfleet_agent_definitions_stale") != 1 {
		t.Error("avfleet_agent_definitions_stale is not 1")
	}
	if el := time.Since(down); el < 2500*time.Millisecond {
		t.Errorf("stale after %s, before stale_after", el)
	}
	if n := fails(); n < 2 {
		t.Errorf("%v failed attempts while the mirror was down, want retries", n)
	}
	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Errorf("clamd while the mirror is down: %q", got)
	}
	// Backoff: the retries slow down (min 200 ms, max 1 s here), so in
	// 2 s there are at most a handful, not one per poll or per millisecond.
	n0 := fails()
	time.Sleep(2 * time.Second)
	if d := fails() - n0; d > 6 {
		t.Errorf("%v attempts in 2 s: no backoff", d)
	}

	// Meanwhile the operator imports new definitions (air-gapped).
	st, err := mirror.Open(mirror.Options{DataDir: data, Retention: m.cfg.Retention, Verifier: mustVerifier(t, m)})
	if err != nil {
		t.Fatal(err)
	}
	td := testutil.ClamAVTestdata(t)
	if _, err := st.Import(context.Background(), []string{filepath.Join(td, "test-4.cdiff"), filepath.Join(td, "test-5.cdiff"), filepath.Join(td, "test-6.cdiff")}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	startMirror(t, certs, data, addr)
	klez := canary(t, "test-6.cvd", "Win.Worm.Klez-1")
	took := eventually(t, 10*time.Second, "update after the mirror returned", func() bool {
		return scan(t, a.ClamdAddr(), klez) == "Win.Worm.Klez-1"
	})
	t.Logf("updated %s after the mirror returned", took)
	eventually(t, 5*time.Second, "stale alert resolved", func() bool { return stale("mirror") == 0 })
	if stale("age") != 1 || metric(t, a.reg, "avfleet_agent_definitions_stale") != 1 {
		t.Error("test-6 (2021) is no longer stale by age")
	}
}

func mustVerifier(t *testing.T, m *testMirror) mirror.Verifier {
	t.Helper()
	v, err := mirror.NewVerifier(m.cfg.Trust)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAgentFirstStartMirrorDown: a new node whose mirror is not there yet
// keeps trying (clamd cannot start on an empty database directory) and comes
// up as soon as the mirror does.
func TestAgentFirstStartMirrorDown(t *testing.T) {
	certs := pki(t, "node1")
	addr := freePort(t)
	cfg := agentConfig(t, certs, "node1", addr)
	a := startAgent(t, cfg, nil)
	eventually(t, 10*time.Second, "failed first attempts", func() bool {
		return metric(t, a.reg, "avfleet_agent_update_failures_total", "reason=unreachable") >= 2
	})
	if pid := a.Clamd().Status().PID; pid != 0 {
		t.Fatalf("clamd (pid %d) started without definitions", pid)
	}
	m := startMirror(t, certs, t.TempDir(), addr)
	m.importFiles("test-3.cvd")
	a.waitReady(t, 30*time.Second)
	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Fatalf("EICAR: %q", got)
	}
}
