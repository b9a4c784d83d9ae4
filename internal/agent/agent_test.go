package agent

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/report"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestAgentEndToEnd: a real mirror holding test-3.cvd, an agent with a
// managed clamd. clamd finds EICAR; the mirror imports test-4..6.cdiff and
// within seconds (the watch: the agent polls once a day here) clamd finds the
// version-6 canary, the agent having downloaded the cdiffs, not a full
// database. The report lands at the mirror, which counts the node as current.
// Killing clamd gets it restarted; SIGTERM stops the agent and its clamd.
func TestAgentEndToEnd(t *testing.T) {
	certs := pki(t, "node1")
	m := startMirror(t, certs, t.TempDir(), "127.0.0.1:0")
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", m.addr)
	cfg.Mirror.ChecksPerDay = 1
	// History from before report.history_days (400) is pruned at start.
	h, err := report.OpenHistory(filepath.Join(cfg.StateDir, report.HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, age := range []int{401, 399} {
		if err := h.InsertUpdate(t.Context(), report.UpdateEvent{Time: time.Now().AddDate(0, 0, -age), Result: report.UpdateCurrent, Source: itoa(age)}); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()
	a := startAgent(t, cfg, nil)
	a.waitReady(t, 30*time.Second)
	// The first set, installed before clamd existed, is confirmed by clamd's start.
	eventually(t, 5*time.Second, "first set confirmed", func() bool {
		_, _, ok := readPending(t, cfg.StateDir)
		return !ok
	})
	eventually(t, 5*time.Second, "update of 401 days ago pruned", func() bool {
		ups, err := a.history.RecentUpdates(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		var sources []string
		for _, u := range ups {
			if u.Source == "401" || u.Source == "399" {
				sources = append(sources, u.Source)
			}
		}
		return len(sources) == 1 && sources[0] == "399"
	})

	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Fatalf("EICAR: clamd says %q, want Eicar-Test-Signature", got)
	}
	klez := canary(t, "test-6.cvd", "Win.Worm.Klez-1")
	if len(klez) != 94 {
		t.Fatalf("Klez canary is %d bytes, want 94", len(klez))
	}
	if got := scan(t, a.ClamdAddr(), klez); got != "" {
		t.Fatalf("version-6 canary found at version 3: %q", got)
	}
	fullBytes := metric(t, a.reg, "avfleet_agent_download_bytes_total", "kind=full")

	start := time.Now()
	m.importFiles("test-4.cdiff", "test-5.cdiff", "test-6.cdiff")
	took := eventually(t, 10*time.Second, "clamd detects the version-6 canary", func() bool {
		return scan(t, a.ClamdAddr(), klez) == "Win.Worm.Klez-1"
	})
	t.Logf("import to detection: %s (after the import returned), %s in all", took, time.Since(start))
	if took > 5*time.Second {
		t.Errorf("propagation took %s, want under 5 s", took)
	}
	// clamd detects the canary as soon as it has reloaded; the updater
	// records the install an instant later.
	eventually(t, 5*time.Second, "updater status at version 6", func() bool {
		return a.Updater().Status().Installed["test"] == 6
	})
	if got := metric(t, a.reg, "avfleet_agent_download_bytes_total", "kind=full"); got != fullBytes {
		t.Errorf("full downloads went from %v to %v bytes: the update was not by cdiffs", fullBytes, got)
	}
	if got := metric(t, a.reg, "avfleet_agent_download_bytes_total", "kind=cdiff"); got <= 0 {
		t.Errorf("no cdiff bytes downloaded")
	}
	if got := metric(t, a.reg, "avfleet_agent_definitions_version", "database=test"); got != 6 {
		t.Errorf("definitions_version %v", got)
	}
	if got := metric(t, a.reg, "avfleet_agent_clamd_loaded_signatures"); got != 10 {
		t.Errorf("clamd_loaded_signatures %v, want 10 (what clamd 1.4 loads from test-6)", got)
	}
	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Errorf("EICAR after the update: %q", got)
	}

	// The report to the mirror: `avfleet mirror status` counts the node.
	eventually(t, 10*time.Second, "mirror counts node1 as current", func() bool {
		st, err := m.d.Store().Status()
		return err == nil && st.Nodes.Total == 1 && st.Nodes.Current == 1
	})

	// Kill clamd: the agent restarts it within seconds.
	pid := a.Clamd().Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, 15*time.Second, "clamd restarted", func() bool {
		s := a.Clamd().Status()
		return s.Ready && s.PID != pid && s.PID != 0
	})
	t.Logf("clamd killed, restarted and ready after %s", took)
	if got := scan(t, a.ClamdAddr(), klez); got != "Win.Worm.Klez-1" {
		t.Errorf("after the restart clamd says %q for the canary", got)
	}
	eventually(t, 5*time.Second, "restart counted", func() bool {
		return metric(t, a.reg, "avfleet_agent_clamd_restarts_total") == 1
	})

	// SIGTERM: Run returns nil and clamd is gone.
	pid = a.Clamd().Status().PID
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("clamd (pid %d) still runs after the agent stopped", pid)
	}
}

// TestAgentAllowlist: allowlist.signatures silences EICAR but not clam.exe;
// adding clam.exe's SHA-256 (a configuration reload, SIGHUP) silences it too,
// at once and without downloading anything; an agent restarted with the
// allowlist emptied rebuilds the installed set without the files.
func TestAgentAllowlist(t *testing.T) {
	const clamExe = "/usr/share/clamav-testfiles/clam.exe"
	testutil.NeedFile(t, clamExe)
	exe, err := os.ReadFile(clamExe)
	if err != nil {
		t.Fatal(err)
	}
	certs := pki(t, "node1")
	m := startMirror(t, certs, t.TempDir(), "127.0.0.1:0")
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", m.addr)
	cfg.Allowlist.Signatures = []string{"Eicar-Test-Signature"}
	a := startAgent(t, cfg, nil)
	a.waitReady(t, 30*time.Second)
	if got := scan(t, a.ClamdAddr(), eicar); got != "" {
		t.Errorf("EICAR allowlisted by name, clamd still says %q", got)
	}
	if got := scan(t, a.ClamdAddr(), exe); got != "Clamav.Test.File-6" {
		t.Errorf("clam.exe: clamd says %q, want Clamav.Test.File-6", got)
	}

	next := *cfg
	next.Allowlist.SHA256 = []string{sha256hex(exe) + ":" + itoa(len(exe))}
	if err := a.Reconfigure(&next); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "clam.exe allowlisted by hash", func() bool {
		return scan(t, a.ClamdAddr(), exe) == ""
	})
	if got := scan(t, a.ClamdAddr(), eicar); got != "" {
		t.Errorf("EICAR: %q", got)
	}
	cur, err := a.Store().Current()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(cur.Dir, "avfleet.sfp"))
	if !strings.HasPrefix(string(b), sha256hex(exe)+":544:") {
		t.Errorf("avfleet.sfp = %q", b)
	}
	if got := metric(t, a.reg, "avfleet_agent_download_bytes_total", "kind=full"); got != float64(len(mustRead(t, "test-3.cvd"))) {
		t.Errorf("full downloads %v bytes: the allowlist change downloaded again", got)
	}
	a.stop(t)

	cfg.Allowlist = next.Allowlist
	cfg.Allowlist.Signatures, cfg.Allowlist.SHA256 = nil, nil
	a = startAgent(t, cfg, nil)
	a.waitReady(t, 30*time.Second)
	eventually(t, 10*time.Second, "allowlist emptied at restart", func() bool {
		return scan(t, a.ClamdAddr(), eicar) == "Eicar-Test-Signature" && scan(t, a.ClamdAddr(), exe) == "Clamav.Test.File-6"
	})
	if got := metric(t, a.reg, "avfleet_agent_download_bytes_total", "kind=full"); got != 0 {
		t.Errorf("the restart downloaded %v bytes", got)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.ClamAVTestdata(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAgentIdentity: a node_name that is not the certificate's CN is refused
// before anything starts, with a message that says what to do.
func TestAgentIdentity(t *testing.T) {
	certs := pki(t, "node1")
	cfg := agentConfig(t, certs, "node1", "127.0.0.1:1")
	cfg.NodeName = "web-7"
	_, err := New(Options{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), `node_name "web-7" does not match the client certificate's CN "node1"`) {
		t.Fatalf("err %v", err)
	}
}
