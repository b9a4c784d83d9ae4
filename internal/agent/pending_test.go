package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/report"
)

// readPending reads STATE_DIR/pending as the updater wrote it.
func readPending(t *testing.T, stateDir string) (set, prev string, ok bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "pending"))
	if os.IsNotExist(err) {
		return "", "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ Set, Prev string }
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("pending marker %q: %v", b, err)
	}
	return p.Set, p.Prev, true
}

// TestAgentUnconfirmedSetRolledBack: the mirror publishes an organisation
// database that verifies under the node's trust (signed with a key it
// trusts) but that clamd cannot parse (a malformed .ndb). An agent run as a
// separate process is killed with SIGKILL right after it switched db to the
// new set, before clamd reported on it. The next start finds the set
// unconfirmed, clamd exits on it, and the agent puts the previous set back:
// clamd runs and finds EICAR, and the history says what happened.
func TestAgentUnconfirmedSetRolledBack(t *testing.T) {
	sample := []byte("avfleet organisation test sample " + strings.Repeat("y", 40))
	acme, orgKey := orgDatabase(t, map[string]string{
		"acme.hdb":   hdbLine(sample, "Acme.Test.Sample-1"),
		"broken.ndb": "this is not a signature\n",
	})
	certs := pki(t, "node1")
	m := startMirrorWith(t, certs, t.TempDir(), "127.0.0.1:0", []string{orgKey})
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", m.addr)
	cfg.Trust.CVDKeys = []string{orgKey}
	cfg.Report.MetricsListen = ""
	cfgPath := writeChildConfig(t, cfg)
	db := filepath.Join(cfg.StateDir, "db")
	cli, err := clamd.NewClient("unix://" + filepath.Join(cfg.StateDir, "clamd.sock"))
	if err != nil {
		t.Fatal(err)
	}

	// Each round: start the agent, wait until clamd runs on the good set,
	// then kill the agent the moment db names another set. The agent
	// retries the bad set after every failed reload, so a kill that came
	// after the switch back (the reload failed first) just tries again.
	var good, bad string
	imported := false
	for round := 1; ; round++ {
		if round > 5 {
			t.Fatal("in 5 rounds no kill landed between the switch and clamd's verdict")
		}
		var logBuf bytes.Buffer
		cmd := startChild(t, cfgPath, &logBuf)
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := cli.Ping(ctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: clamd did not answer: %v\n%s", round, err, logBuf.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if good == "" {
			good, _ = os.Readlink(db)
		}
		if cur, _ := os.Readlink(db); cur != good {
			t.Fatalf("round %d: clamd runs with db -> %s, want the good set %s", round, cur, good)
		}
		kids := children(cmd.Process.Pid)
		if !imported {
			m.importPaths(acme)
			imported = true
		}
		var switched string
		deadline = time.Now().Add(20 * time.Second)
		for switched == "" && time.Now().Before(deadline) {
			if cur, err := os.Readlink(db); err == nil && cur != good {
				switched = cur
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
		for _, pid := range kids { // clamd dies with its agent (Pdeathsig)
			for i := 0; syscall.Kill(pid, 0) == nil && i < 250; i++ {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(b, []byte(") Z ")) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if switched == "" {
			t.Fatalf("round %d: the agent never switched db to the organisation database\n%s", round, logBuf.String())
		}
		cur, _ := os.Readlink(db)
		set, prev, ok := readPending(t, cfg.StateDir)
		t.Logf("round %d: killed with db -> %s (pending %v: set %s prev %s)", round, cur, ok, set, prev)
		if cur != good && ok && "sets/"+set == cur && "sets/"+prev == good {
			bad = cur
			break
		}
	}

	// What the killed agent left: clamscan cannot load db either.
	if out, err := exec.Command("clamscan", "--no-summary", "-d", db, "/dev/null").CombinedOutput(); err == nil || !bytes.Contains(out, []byte("Malformed database")) {
		t.Fatalf("clamscan on the set the agent was killed on: %v\n%s", err, out)
	}

	a := startAgent(t, cfg, nil)
	a.waitReady(t, 60*time.Second)
	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Fatalf("EICAR after the rollback: %q", got)
	}
	if st := a.Clamd().Status(); st.Starts < 2 {
		t.Errorf("clamd started %d times, want a failed start on the bad set and one on the good set", st.Starts)
	}
	ups, err := a.history.RecentUpdates(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range ups {
		if u.Result == report.UpdateFailed && strings.Contains(u.Error, "clamd could not load set "+filepath.Base(bad)) &&
			strings.Contains(u.Error, "Malformed database") && strings.Contains(u.Error, "put back the previous set "+filepath.Base(good)) {
			found = true
			t.Logf("history: %s", u.Error)
		}
	}
	if !found {
		t.Fatalf("no failed update in the history saying the set was put back: %+v", ups)
	}
	// The updater tries the database again (after every failure, with
	// backoff) and clamd refuses it again; between the tries the node is on
	// the good set with nothing unconfirmed.
	eventually(t, 20*time.Second, "the updater's own reload failure", func() bool {
		return strings.Contains(a.Updater().Status().LastError, "clamd did not load the new set")
	})
	eventually(t, 10*time.Second, "db on the good set, no pending marker", func() bool {
		cur, _ := os.Readlink(db)
		_, _, ok := readPending(t, cfg.StateDir)
		return cur == good && !ok
	})
	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Fatalf("EICAR: %q", got)
	}
}
