package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestDemo runs the whole demo with the real clamd and checks what each
// scan found, that version 2 reached clamd, the mirror's node counts, and
// that nothing is left behind.
func TestDemo(t *testing.T) {
	clamd := testutil.NeedCommand(t, "clamd")
	parent := t.TempDir()
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &out, TempDir: parent, ClamdBinary: clamd, Executable: "avfleet", Timeout: 30 * time.Second})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	withExe := fileExists(clamExePath)
	for i, want := range []map[string]string{
		{"clean.txt": "", "eicar.com": sigEICAR, "eicar.zip": sigEICAR, "eicar.tar.gz": sigEICAR, "notes.txt": sigMarker, "new-threat.txt": ""},
		{"clean.txt": "", "eicar.com": sigEICAR, "eicar.zip": sigEICAR, "eicar.tar.gz": sigEICAR, "notes.txt": sigMarker, "new-threat.txt": sigNewInV2},
	} {
		if withExe {
			want["clam.exe"] = sigClamExe
		}
		got := res.Found[i]
		for name, sig := range want {
			if sig != "" {
				sig += ".UNOFFICIAL" // clamd's mark on signatures not from ClamAV
			}
			if got[name] != sig {
				t.Errorf("scan %d: %s: found %q, want %q", i+1, name, got[name], sig)
			}
		}
		if len(got) != countFound(want) {
			t.Errorf("scan %d: %d detections %v, want %d", i+1, len(got), got, countFound(want))
		}
	}
	if res.UpdateLatency <= 0 || res.UpdateLatency > 10*time.Second {
		t.Errorf("version 2 reached clamd after %s, want within 10 s", res.UpdateLatency)
	}
	if res.Nodes.Total != 1 || res.Nodes.Current != 1 {
		t.Errorf("mirror counts %+v, want 1 node, 1 current", res.Nodes)
	}
	if fileExists(res.Dir) {
		t.Errorf("%s is still there without --keep", res.Dir)
	}
	for _, s := range []string{"[8/8]", "new-threat.txt  Demo.Test.NewInV2-NDB.UNOFFICIAL FOUND   <- new", "nodes: 1 total, 1 reporting (24 h), 1 current", "Removed " + res.Dir} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
	assertNoProcessIn(t, res.Dir)
}

// TestDemoKeep: with Keep the directory stays, its configurations load, and
// the printed commands name them.
func TestDemoKeep(t *testing.T) {
	clamd := testutil.NeedCommand(t, "clamd")
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &out, Keep: true, TempDir: t.TempDir(), ClamdBinary: clamd, Executable: "/x/avfleet"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	m, a := filepath.Join(res.Dir, "mirror", "mirror.yaml"), filepath.Join(res.Dir, "agent", "agent.yaml")
	if _, err := config.LoadMirror(m); err != nil {
		t.Error(err)
	}
	if _, err := config.LoadAgent(a); err != nil {
		t.Error(err)
	}
	for _, s := range []string{
		"/x/avfleet mirror serve --config " + m,
		"/x/avfleet agent run --config " + a,
		"/x/avfleet scan --clamd unix://" + filepath.Join(res.Dir, "agent", "state", "clamd.sock") + " " + filepath.Join(res.Dir, "samples"),
		"/x/avfleet mirror status --config " + m,
		"curl -s --cacert " + filepath.Join(res.Dir, "pki", "ca.crt"),
		"rm -rf " + res.Dir,
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
	for _, f := range []string{"samples/eicar.zip", "mirror/mirror.log", "agent/agent.log", "databases/v2/demo.cvd", "keys/demo.pub.pem"} {
		if !fileExists(filepath.Join(res.Dir, f)) {
			t.Errorf("%s was not kept", f)
		}
	}
	assertNoProcessIn(t, res.Dir)
}

// TestDemoInterrupted cancels the demo (Ctrl-C) while clamd runs: the
// agent, clamd and the mirror stop and the directory goes.
func TestDemoInterrupted(t *testing.T) {
	clamd := testutil.NeedCommand(t, "clamd")
	for _, at := range []string{"[3/8]", "[6/8]", "[8/8]"} {
		t.Run(at, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &cancelAt{marker: at, cancel: cancel}
			res, err := Run(ctx, Options{Out: w, TempDir: t.TempDir(), ClamdBinary: clamd})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want the interruption\n%s", err, w.String())
			}
			if fileExists(res.Dir) {
				t.Errorf("%s is still there", res.Dir)
			}
			assertNoProcessIn(t, res.Dir)
		})
	}
}

func TestDemoWithoutClamd(t *testing.T) {
	parent := t.TempDir()
	_, err := Run(context.Background(), Options{TempDir: parent, ClamdBinary: filepath.Join(parent, "no-such-clamd")})
	if !errors.Is(err, ErrNoClamd) {
		t.Fatalf("got %v, want ErrNoClamd", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("the demo created %d files before finding clamd missing", len(ents))
	}
}

func TestSamples(t *testing.T) {
	s, _, err := samples()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, x := range s {
		names[x.name] = true
		if x.wantV1 != "" && x.wantV2 != x.wantV1 {
			t.Errorf("%s: version 2 must keep finding what version 1 finds", x.name)
		}
	}
	for _, n := range []string{"clean.txt", "eicar.com", "eicar.zip", "eicar.tar.gz", "new-threat.txt"} {
		if !names[n] {
			t.Errorf("no sample %s", n)
		}
	}
}

func countFound(m map[string]string) int {
	n := 0
	for _, v := range m {
		if v != "" {
			n++
		}
	}
	return n
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// assertNoProcessIn fails if a process (clamd) still runs in dir.
func assertNoProcessIn(t *testing.T, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cwd, err := os.Readlink(filepath.Join(p, "cwd"))
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		if strings.HasPrefix(cwd, dir) || bytes.Contains(cmd, []byte(dir)) {
			t.Errorf("process %s (%s) still runs in %s", filepath.Base(p), bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}), dir)
		}
	}
}

// cancelAt is the demo's output that presses Ctrl-C when marker appears.
type cancelAt struct {
	mu     sync.Mutex
	b      bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (w *cancelAt) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.marker) {
		w.cancel()
	}
	return len(p), nil
}

func (w *cancelAt) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
