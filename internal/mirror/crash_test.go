package mirror

import (
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/mirrortest"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestKill9KeepsACompleteVerifiedSet kills the real mirror daemon with
// SIGKILL at random moments while it verifies files dropped into incoming/,
// while `avfleet mirror import` / `rollback` / `hold` / `release` run beside
// it (and are themselves sometimes killed). After every restart each served
// file must verify and match the manifest.
func TestKill9KeepsACompleteVerifiedSet(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	bin := avfleetBinary(t)
	e := newMirrorEnv(t, "retention: {cdiffs: 30, versions: 3}\n")
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	bad := t.TempDir()
	six, err := os.ReadFile(filepath.Join(td, "test-6.cvd"))
	if err != nil {
		t.Fatal(err)
	}
	six[len(six)-300] ^= 0x10
	must(t, os.WriteFile(filepath.Join(bad, "test-7.cvd"), six, 0o644))
	must(t, os.WriteFile(filepath.Join(bad, "daily.cvd"), []byte("<html><body>404</body></html>"), 0o644))
	pool := []string{filepath.Join(td, "test-1.cvd"), filepath.Join(td, "test-3.cvd"), filepath.Join(td, "test-6.cvd"),
		filepath.Join(bad, "test-7.cvd"), filepath.Join(bad, "daily.cvd")}
	for v := 2; v <= 6; v++ {
		pool = append(pool, filepath.Join(td, fmt.Sprintf("test-%d.cdiff", v)))
	}
	chain := []string{pool[0], pool[5], pool[6], pool[7], pool[8], pool[9]} // test-1.cvd, cdiffs 2..6
	pick := func() []string {
		if rng.Intn(3) == 0 {
			return chain
		}
		var out []string
		for _, p := range pool {
			if rng.Intn(2) == 0 {
				out = append(out, p)
			}
		}
		return out
	}
	drop := func(files []string) {
		for _, p := range files {
			name := filepath.Base(p)
			for _, src := range []string{p + ".sign", p} { // the .sign first
				b, err := os.ReadFile(src)
				if err != nil {
					continue
				}
				tmp := filepath.Join(e.data, "incoming", ".drop-"+name)
				must(t, os.WriteFile(tmp, b, 0o644))
				// Old enough for the daemon's settle time: verified at once.
				old := time.Now().Add(-time.Minute)
				must(t, os.Chtimes(tmp, old, old))
				dst := filepath.Join(e.data, "incoming", name)
				if src != p {
					dst += ".sign"
				}
				must(t, os.Rename(tmp, dst))
			}
		}
	}

	start := time.Now()
	m := e.startMirror(t)
	c := e.client(t, "node1")
	c.Transport.(*http.Transport).DisableKeepAlives = false
	const rounds = 50
	var kills, cliKills, requeued int
	for i := 0; i < rounds; i++ {
		if i%10 == 0 {
			// Start over now and then, so there is verification work to interrupt.
			m.kill()
			must(t, os.RemoveAll(e.data))
			m = e.startMirror(t)
		}
		var cli *exec.Cmd
		switch rng.Intn(4) {
		case 0, 1:
			drop(pick())
		case 2:
			cli = exec.Command(bin, append([]string{"mirror", "import", "--config", e.cfg}, pick()...)...)
		case 3:
			args := [][]string{{"rollback", "test", fmt.Sprint(2 + rng.Intn(5))}, {"hold", "test"}, {"release", "test"}}[rng.Intn(3)]
			cli = exec.Command(bin, append([]string{"mirror", args[0], "--config", e.cfg}, args[1:]...)...)
			drop(pick())
		}
		if cli != nil {
			must(t, cli.Start())
		}
		time.Sleep(time.Duration(rng.Intn(150)) * time.Millisecond)
		m.kill()
		kills++
		if cli != nil {
			if rng.Intn(2) == 0 {
				_ = cli.Process.Kill()
				cliKills++
			}
			_ = cli.Wait()
		}
		m = e.startMirror(t)
		checkServedSet(t, e, c, i)
		requeued += strings.Count(m.log.String(), "requeued file from an interrupted verification")
		if t.Failed() {
			t.Fatalf("round %d (seed %d): served set inconsistent", i, seed)
		}
	}
	// Random timing may miss the short verification window, so end with
	// kills aimed at it: drop the chain and kill the daemon the moment a
	// file sits in work/*/in. Each such kill must be requeued on restart.
	aimed, tries := 0, 0
	for ; tries < 20 && aimed < 3; tries++ {
		try := tries
		m.kill()
		must(t, os.RemoveAll(e.data))
		m = e.startMirror(t)
		drop(chain)
		if !waitMidVerification(e.data, 5*time.Second) {
			continue
		}
		m.kill()
		kills++
		m = e.startMirror(t)
		// Recovery runs when the daemon first takes the store's lock;
		// give it a moment (a kill that came just after the commit
		// leaves nothing to requeue).
		n := 0
		for wait := time.Now().Add(2 * time.Second); n == 0 && time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			n = strings.Count(m.log.String(), "requeued file from an interrupted verification")
		}
		checkServedSet(t, e, c, rounds+try)
		if n > 0 {
			requeued += n
			aimed++
		}
		if t.Failed() {
			t.Fatalf("aimed kill %d (seed %d): served set inconsistent", try, seed)
		}
	}
	// The store is not wedged: the whole chain still imports.
	out, errOut, code := runAvfleet(t, "mirror", "release", "--config", e.cfg, "test")
	if code > 1 {
		t.Fatalf("release: %d %s%s", code, out, errOut)
	}
	// Older files of the chain may be rejected now (a newer full CVD came
	// first in this round); what matters is that the newest is reached.
	out, errOut, code = runAvfleet(t, append([]string{"mirror", "import", "--config", e.cfg}, append(chain, filepath.Join(td, "test-6.cvd"))...)...)
	if code > 1 {
		t.Fatalf("final import: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "version 6 served", func() bool {
		man := e.manifest(t, c)
		return len(man.Databases) == 1 && man.Databases[0].Version == 6
	})
	checkServedSet(t, e, c, rounds)
	m.stop(t)
	if requeued == 0 {
		t.Error("no SIGKILL landed while a file was being verified: the test proved less than it should")
	}
	t.Logf("%d SIGKILLs of the daemon (%d of a CLI command beside it, %d of %d aimed at a verification landed) in %v; %d files were mid-verification and requeued; every restart served a complete verified set",
		kills, cliKills, aimed, tries, time.Since(start).Round(time.Millisecond), requeued)
}

// waitMidVerification polls data/work/*/in until a file is in it (a file
// claimed from incoming/ and not yet committed or rejected), and reports
// whether one was seen before the timeout.
func waitMidVerification(data string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ins, _ := filepath.Glob(filepath.Join(data, "work", "*", "in", "*"))
		if len(ins) > 0 {
			return true
		}
	}
	return false
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkServedSet checks the served set of the mirror in e (see
// mirrortest.CheckServedSet) and names the round when it fails.
func checkServedSet(t *testing.T, e *mirrorEnv, c *http.Client, round int) {
	t.Helper()
	mirrortest.CheckServedSet(t, c, "https://"+e.https, nil)
	if t.Failed() {
		t.Logf("round %d: served set inconsistent", round)
	}
}
