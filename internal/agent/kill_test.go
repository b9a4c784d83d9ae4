package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/testutil"
)

// childEnv makes the test binary run an agent (the same code as `avfleet
// agent run`) instead of the tests, so that a test can kill -9 it.
const childEnv = "AVFLEET_TEST_AGENT_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}

func runChild(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := config.LoadAgent(path)
	if err != nil {
		log.Error("config", "err", err)
		return 2
	}
	a, err := New(Options{Config: cfg, Logger: log, BackoffMin: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		ClamdBackoff: 100 * time.Millisecond})
	if err != nil {
		log.Error("agent", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := a.Run(ctx); err != nil {
		log.Error("agent", "err", err)
		return 2
	}
	return 0
}

// writeChildConfig writes cfg's effective configuration for a child agent
// and returns its path.
func writeChildConfig(t *testing.T, cfg *config.Agent) string {
	t.Helper()
	y, err := cfg.Effective()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, y, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startChild runs an agent on cfgPath in a child process (the test binary
// again, see TestMain), its log going to stderr.
func startChild(t *testing.T, cfgPath string, stderr io.Writer) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// TestAgentKill9: the agent is killed with SIGKILL at random moments while
// the mirror flips between two versions every 150 ms (rollback to 3, release
// to 6), so that most kills land during a download, a set being built, the
// symlink swap or a reload. After every kill, stock clamscan loads the
// database directory, and the next start recovers; clamd dies with its agent.
func TestAgentKill9(t *testing.T) {
	clamscan := testutil.NeedCommand(t, "clamscan")
	rounds := 30
	if s := os.Getenv("AVFLEET_KILL_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	certs := pki(t, "node1")
	m := startMirror(t, certs, t.TempDir(), "127.0.0.1:0")
	m.importFiles("test-3.cvd", "test-4.cdiff", "test-5.cdiff", "test-6.cdiff")
	cfg := agentConfig(t, certs, "node1", m.addr)
	cfg.Report.MetricsListen = ""
	cfgPath := writeChildConfig(t, cfg)
	eicarFile := filepath.Join(t.TempDir(), "eicar.com")
	if err := os.WriteFile(eicarFile, eicar, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		st := m.d.Store()
		for i := 0; ctx.Err() == nil; i++ {
			var err error
			if i%2 == 0 {
				_, err = st.Rollback(ctx, "test", 3)
			} else {
				_, err = st.Release(ctx, "test")
			}
			if err != nil && ctx.Err() == nil {
				t.Errorf("flip: %v", err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(150 * time.Millisecond):
			}
		}
	}()
	defer func() { cancel(); <-flipped }()

	installs, debris := 0, 0
	for round := 1; round <= rounds; round++ {
		var logBuf bytes.Buffer
		cmd := startChild(t, cfgPath, &logBuf)
		time.Sleep(300*time.Millisecond + rand.N(1200*time.Millisecond))
		kids := children(cmd.Process.Pid)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		installs += strings.Count(logBuf.String(), "result=updated")
		// Failed cycles are expected here (a file can vanish when the mirror
		// flips mid-download); a crash or a stopped agent is not.
		if l := logBuf.String(); strings.Contains(l, "panic:") || strings.Contains(l, `level=ERROR msg=agent`) {
			t.Errorf("round %d: the agent failed:\n%s", round, l)
		}
		// clamd dies with its agent (Pdeathsig).
		for _, pid := range kids {
			deadline := time.Now().Add(5 * time.Second)
			for syscall.Kill(pid, 0) == nil {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(b, []byte(") Z ")) {
					break // a zombie waiting for init: gone
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: clamd (pid %d) outlived its agent", round, pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		// What the kill interrupted (cleared at the next start).
		left, _ := filepath.Glob(filepath.Join(cfg.StateDir, "sets", ".tmp-*"))
		dl, _ := os.ReadDir(filepath.Join(cfg.StateDir, "download"))
		_, newLink := os.Lstat(filepath.Join(cfg.StateDir, "db.new"))
		if len(left) > 0 || len(dl) > 0 || newLink == nil {
			debris++
		}
		if _, err := os.Lstat(filepath.Join(cfg.StateDir, "db")); err != nil && round == 1 {
			continue // killed before its very first install: nothing to load yet
		}
		// Stock clamscan loads the database directory as the killed agent left it.
		out, err := exec.Command(clamscan, "--no-summary", "-d", filepath.Join(cfg.StateDir, "db"), eicarFile).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
			t.Fatalf("round %d: clamscan cannot load %s/db after kill -9: %v\n%s", round, cfg.StateDir, err, out)
		}
		if !strings.Contains(string(out), "Eicar-Test-Signature FOUND") {
			t.Fatalf("round %d: clamscan on the db dir: %s", round, out)
		}
	}
	t.Logf("%d kills, %d installs completed in between, %d kills interrupted an install in progress", rounds, installs, debris)
	if installs < rounds {
		t.Errorf("only %d installs in %d rounds: the kills did not land among installs", installs, rounds)
	}
}
