package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestAgentExternalClamd: clamd.mode external. An operator's clamd reads the
// agent's STATE_DIR/db (a symlink the agent swaps); the agent installs the
// first set before that clamd starts, then updates it by RELOAD through the
// socket, confirmed by clamd answering again (no daily database here, so
// VERSION cannot name the new version: the weaker confirmation).
func TestAgentExternalClamd(t *testing.T) {
	bin := testutil.NeedCommand(t, "clamd")
	certs := pki(t, "node1")
	m := startMirror(t, certs, t.TempDir(), "127.0.0.1:0")
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", m.addr)
	sock := filepath.Join(cfg.StateDir, "ext.sock")
	cfg.Clamd.Mode = "external"
	cfg.Clamd.Socket = "unix://" + sock

	// First definitions: what `avfleet agent update` does before clamd exists.
	a0, err := New(Options{Config: cfg, Logger: testLogger(t, "update"), Registry: nil})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a0.Updater().Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	a0.Close()

	conf := filepath.Join(cfg.StateDir, "ext-clamd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("Foreground yes\nLocalSocket %s\nDatabaseDirectory %s\nSelfCheck 0\nLogTime no\n",
		sock, filepath.Join(cfg.StateDir, "db"))), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c, _ := clamd.NewClient(cfg.Clamd.Socket)
	eventually(t, 30*time.Second, "external clamd answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx) == nil
	})

	a := startAgent(t, cfg, nil)
	a.waitReady(t, 30*time.Second)
	if got := scan(t, cfg.Clamd.Socket, eicar); got != "Eicar-Test-Signature" {
		t.Fatalf("EICAR: %q", got)
	}
	// The first set was installed with no clamd to confirm it; the agent
	// had the external clamd reload it at start, which confirms it.
	eventually(t, 5*time.Second, "first set confirmed", func() bool {
		_, _, ok := readPending(t, cfg.StateDir)
		return !ok
	})
	klez := canary(t, "test-6.cvd", "Win.Worm.Klez-1")
	m.importFiles("test-4.cdiff", "test-5.cdiff", "test-6.cdiff")
	eventually(t, 10*time.Second, "external clamd reloaded the new set", func() bool {
		return scan(t, cfg.Clamd.Socket, klez) == "Win.Worm.Klez-1"
	})
	eventually(t, 5*time.Second, "clamd logs the reload", func() bool {
		return strings.Contains(logs.String(), "Database correctly reloaded")
	})
	if got := metric(t, a.reg, "avfleet_agent_clamd_up"); got != 1 {
		t.Errorf("clamd_up = %v", got)
	}
}

// TestAgentExternalUnconfirmedNoClamd: `agent update` installed a set while
// the external clamd was down (nothing confirmed it). At start the agent
// asks that clamd to load it; no clamd answers, so the set clamd last ran
// (the previous one) is put back and the failure reported; the updater
// installs the newer set again once clamd confirms it.
func TestAgentExternalUnconfirmedNoClamd(t *testing.T) {
	testutil.NeedCommand(t, "clamd")
	certs := pki(t, "node1")
	m := startMirror(t, certs, t.TempDir(), "127.0.0.1:0")
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", m.addr)
	cfg.Clamd.Mode = "external"
	cfg.Clamd.Socket = "unix://" + filepath.Join(cfg.StateDir, "ext.sock")
	cycle := func() {
		t.Helper()
		a0, err := New(Options{Config: cfg, Logger: testLogger(t, "update")})
		if err != nil {
			t.Fatal(err)
		}
		defer a0.Close()
		if _, err := a0.Updater().Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	cycle()
	first, _ := os.Readlink(filepath.Join(cfg.StateDir, "db"))
	m.importFiles("test-4.cdiff")
	cycle()
	second, _ := os.Readlink(filepath.Join(cfg.StateDir, "db"))
	if set, prev, ok := readPending(t, cfg.StateDir); !ok || "sets/"+set != second || "sets/"+prev != first {
		t.Fatalf("pending %s (prev %s, %v), want %s replacing %s", set, prev, ok, second, first)
	}

	a := startAgent(t, cfg, nil)
	// The status moves on with the updater's next cycles; the history keeps it.
	eventually(t, 10*time.Second, "rollback in the history", func() bool {
		ups, err := a.history.RecentUpdates(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range ups {
			if strings.Contains(u.Error, "clamd could not load set "+filepath.Base(second)) &&
				strings.Contains(u.Error, "put back the previous set "+filepath.Base(first)) && u.NewVersions["test"] == 3 {
				return true
			}
		}
		return false
	})
	// Later cycles install version 4 again and fail to confirm it too, so db
	// names version 3 between them: never a set no clamd confirmed.
	eventually(t, 10*time.Second, "db back on version 3", func() bool {
		cur, err := a.Store().Current()
		return err == nil && cur.Versions()["test"] == 3
	})
}
