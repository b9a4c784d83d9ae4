//go:build unix

package mirror

import (
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/mirrortest"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestRootCommandsKeepTheDataDirOwner runs import, hold, rollback, release
// and status as root on a fresh data directory that belongs to another user
// (uid 65534, as the packaged daemon runs as "avfleet"): everything they
// create (the lock, state.db and its journal, history, sets, the verified
// link) must belong to that user, a daemon running as that user must then
// verify and publish new files, and root's commands must keep working
// beside it. The files imported are readable by root only; a leftover of an
// older root run (a root-owned directory) is given back.
func TestRootCommandsKeepTheDataDirOwner(t *testing.T) {
	testutil.NeedRoot(t)
	td := testutil.ClamAVTestdata(t)
	bin := avfleetBinary(t)
	const uid, gid = 65534, 65534

	dir := t.TempDir()
	// The daemon, run as uid 65534, must reach the configuration, the data
	// directory and the binary.
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(bin)} {
		must(t, os.Chmod(d, 0o755))
	}
	data := filepath.Join(dir, "data")
	must(t, os.Mkdir(data, 0o750))
	must(t, os.Chown(data, uid, gid))
	must(t, os.Mkdir(filepath.Join(data, "incoming"), 0o755)) // as an older root run left it
	src := filepath.Join(dir, "root-only")
	must(t, os.Mkdir(src, 0o700))
	for _, n := range []string{"test-1.cvd", "test-1.cvd.sign", "test-2.cdiff", "test-2.cdiff.sign", "test-3.cdiff", "test-3.cdiff.sign"} {
		copyFile(t, filepath.Join(src, n), filepath.Join(td, n))
		must(t, os.Chmod(filepath.Join(src, n), 0o600))
	}
	plain := freePorts(t, 1)[0]
	cfg := filepath.Join(dir, "mirror.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s\nlisten: \"\"\nadmin_listen: \"\"\nplain_listen: %q\n", data, plain)), 0o644))

	notOwned := func(when string) {
		t.Helper()
		var bad []string
		err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return nil // removed meanwhile by the running daemon
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
				rel, _ := filepath.Rel(data, p)
				bad = append(bad, fmt.Sprintf("%s (%d:%d)", rel, st.Uid, st.Gid))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Errorf("%s: not owned by the data directory's owner %d:%d: %s", when, uid, gid, strings.Join(bad, ", "))
		}
	}
	root := func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := runAvfleet(t, args...)
		if code != want {
			t.Fatalf("avfleet %v as root: exit %d, want %d\n%s%s", args, code, want, out, errOut)
		}
		return out
	}

	out := root(0, "mirror", "import", "--config", cfg, filepath.Join(src, "test-1.cvd"), filepath.Join(src, "test-2.cdiff"))
	if strings.Count(out, "accepted  ") != 2 {
		t.Fatalf("import of root-only files as root:\n%s", out)
	}
	root(0, "mirror", "hold", "--config", cfg, "test")
	root(0, "mirror", "rollback", "--config", cfg, "test", "1")
	root(0, "mirror", "release", "--config", cfg, "test")
	if out := root(0, "mirror", "status", "--config", cfg); !strings.Contains(out, "serving newest") {
		t.Fatalf("status as root:\n%s", out)
	}
	for _, n := range []string{"lock", "state.db", "verified", "history/test/2"} {
		if _, err := os.Lstat(filepath.Join(data, n)); err != nil {
			t.Fatalf("after the commands: %v", err)
		}
	}
	notOwned("after import, hold, rollback, release, status as root")

	// The daemon as the owner verifies and publishes what comes next.
	d := exec.Command(bin, "mirror", "serve", "--config", cfg)
	d.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var log testutil.SyncBuffer
	d.Stdout, d.Stderr = &log, &log
	must(t, d.Start())
	exited := make(chan struct{})
	go func() { d.Wait(); close(exited) }()
	t.Cleanup(func() { d.Process.Kill(); <-exited })
	c := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + plain
	version := func() uint {
		m, err := mirrortest.Manifest(c, base)
		if err != nil || len(m.Databases) != 1 {
			return 0
		}
		return m.Databases[0].Version
	}
	waitFor(t, "the daemon running as the owner to serve version 2", func() bool { return version() == 2 })
	for _, n := range []string{"test-3.cdiff.sign", "test-3.cdiff"} {
		b, err := os.ReadFile(filepath.Join(src, n))
		must(t, err)
		tmp := filepath.Join(data, "incoming", ".drop-"+n)
		must(t, os.WriteFile(tmp, b, 0o644))
		must(t, os.Chown(tmp, uid, gid))
		old := time.Now().Add(-time.Minute)
		must(t, os.Chtimes(tmp, old, old))
		must(t, os.Rename(tmp, filepath.Join(data, "incoming", n)))
	}
	waitFor(t, "the daemon running as the owner to verify and serve test-3.cdiff", func() bool { return version() == 3 })

	// Root's commands beside the running daemon.
	root(0, "mirror", "hold", "--config", cfg, "test")
	root(0, "mirror", "import", "--config", cfg, filepath.Join(src, "test-3.cdiff"))
	waitFor(t, "the daemon to serve the hold", func() bool {
		m, err := mirrortest.Manifest(c, base)
		return err == nil && len(m.Databases) == 1 && m.Databases[0].Held
	})
	mirrortest.CheckServedSet(t, c, base, nil)
	root(0, "mirror", "release", "--config", cfg, "test")
	notOwned("with the daemon running as the owner")
	if strings.Contains(log.String(), "level=ERROR") || strings.Contains(log.String(), "permission denied") {
		t.Errorf("the daemon running as the owner logged errors:\n%s", log.String())
	}
	d.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop after SIGTERM")
	}
}
