package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/agent/quarantine"
	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/report"
	"github.com/avfleet/avfleet/internal/testutil"
)

// The helper mode of the test binary: TestUnreadableFiles runs a scan in a
// child process that lacks root's permission to bypass file modes.
func TestMain(m *testing.M) {
	if os.Getenv("AVFLEET_SCAN_HELPER") != "" {
		os.Exit(scanHelper())
	}
	os.Exit(m.Run())
}

type helperResult struct {
	Summary report.ScanSummary
	Events  []FileEvent
}

func scanHelper() int {
	cl, err := clamd.NewClient(os.Getenv("AVFLEET_SCAN_HELPER_CLAMD"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := New(Config{Engine: ClamdEngine(cl), Workers: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var col collector
	sum, err := s.Run(context.Background(), Options{Paths: []string{os.Getenv("AVFLEET_SCAN_HELPER_PATH")}, OnFile: col.add})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	json.NewEncoder(os.Stdout).Encode(helperResult{sum, col.events})
	return 0
}

func realScanner(t *testing.T, r *clamdtest.Real, c Config) *Scanner {
	t.Helper()
	cl, err := clamd.NewClient(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	c.Engine = ClamdEngine(cl)
	if c.Workers == 0 {
		c.Workers = 2
	}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type fileState struct {
	data               []byte
	uid, gid           uint32
	mode               uint32
	mtime, ctime, size int64
}

func stateOf(t *testing.T, p string) fileState {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return fileState{b, st.Uid, st.Gid, st.Mode & 0o7777, st.Mtim.Nano(), st.Ctim.Nano(), st.Size}
}

// TestRealActions: notify touches nothing, copy keeps the original, move
// then restore gives back bytes, owner and mode, remove removes.
func TestRealActions(t *testing.T) {
	testutil.NeedRoot(t) // the files belong to another user
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	base := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(base, name, "tool.exe")
		write(t, p, clamdtest.EICAR)
		if err := os.Chown(p, 1234, 2345); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, 0o4751); err != nil { // os.Chmod would need os.ModeSetuid
			t.Fatal(err)
		}
		return p
	}
	run := func(action, dir string) (report.ScanSummary, []report.Detection, *Scanner) {
		var dets []report.Detection
		sink := report.SinkFunc(func(_ context.Context, ev report.Event) error {
			if d, ok := ev.(report.Detection); ok {
				dets = append(dets, d)
			}
			return nil
		})
		s := realScanner(t, r, Config{Action: action, QuarantineDir: filepath.Join(base, "quarantine"), Sink: sink})
		sum, err := s.Run(context.Background(), Options{Paths: []string{filepath.Join(base, dir)}})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Detections != 1 || len(dets) != 1 || dets[0].Signature != "Eicar-Test-Signature" || dets[0].Action != action || dets[0].ActionResult != report.ActionOK {
			t.Fatalf("%s: summary %+v, detections %+v", action, sum, dets)
		}
		return sum, dets, s
	}

	t.Run("notify", func(t *testing.T) {
		p := mk("notify")
		before := stateOf(t, p)
		run("notify", "notify")
		after := stateOf(t, p)
		if !bytes.Equal(after.data, before.data) || after.uid != before.uid || after.gid != before.gid ||
			after.mode != before.mode || after.mtime != before.mtime || after.ctime != before.ctime {
			t.Errorf("notify changed the file: %+v -> %+v", before, after)
		}
		if _, err := os.Stat(filepath.Join(base, "quarantine")); err == nil {
			if ents, _ := os.ReadDir(filepath.Join(base, "quarantine")); len(ents) > 0 {
				t.Errorf("notify quarantined something: %v", ents)
			}
		}
	})
	t.Run("copy", func(t *testing.T) {
		p := mk("copy")
		before := stateOf(t, p)
		_, dets, _ := run("copy", "copy")
		if after := stateOf(t, p); !bytes.Equal(after.data, before.data) || after.ctime != before.ctime {
			t.Error("copy changed the original")
		}
		q, _ := quarantine.OpenExisting(filepath.Join(base, "quarantine"))
		m, err := q.Get(dets[0].QuarantineID)
		if err != nil || m.Path != p || m.Signature != "Eicar-Test-Signature" || m.Mode != "4751" || m.UID != 1234 {
			t.Errorf("quarantine entry %+v, %v", m, err)
		}
		q.Delete(m.ID)
	})
	t.Run("move and restore", func(t *testing.T) {
		p := mk("move")
		before := stateOf(t, p)
		_, dets, s := run("move", "move")
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("moved file still there: %v", err)
		}
		q := s.quar
		fi, err := os.Stat(q.DataPath(dets[0].QuarantineID))
		if err != nil || fi.Mode().Perm() != 0o400 {
			t.Fatalf("quarantined copy: %v %v", fi, err)
		}
		// A later scan does not find the quarantined file.
		sum, err := s.Run(context.Background(), Options{Paths: []string{filepath.Join(base, "quarantine")}})
		if err != nil || sum.Detections != 0 || sum.SkippedByReason[ReasonQuarantine] != 1 {
			t.Errorf("scan of a tree holding the quarantine: %+v %v", sum, err)
		}
		where, err := q.Restore(dets[0].QuarantineID)
		if err != nil || where != p {
			t.Fatalf("restore: %q %v", where, err)
		}
		after := stateOf(t, p)
		if !bytes.Equal(after.data, before.data) || after.uid != before.uid || after.gid != before.gid || after.mode != before.mode || after.mtime != before.mtime {
			t.Errorf("restored %+v, want %+v", after, before)
		}
	})
	t.Run("remove", func(t *testing.T) {
		p := mk("remove")
		run("remove", "remove")
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("removed file still there: %v", err)
		}
	})
}

// TestRealIncremental: a second scan with the same definitions sends
// nothing to clamd, a changed file is scanned (and found), new definitions
// rescan everything.
func TestRealIncremental(t *testing.T) {
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	base := t.TempDir()
	for i := range 200 {
		write(t, filepath.Join(base, "tree", fmt.Sprintf("d%d", i%7), fmt.Sprintf("f%03d", i)), bytes.Repeat([]byte{byte(i)}, 100+i*37))
	}
	s := realScanner(t, r, Config{CachePath: filepath.Join(base, CacheFile)})
	scan := func(defs string) report.ScanSummary {
		t.Helper()
		sum, err := s.Run(context.Background(), Options{Paths: []string{filepath.Join(base, "tree")}, Definitions: defs})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if sum := scan("test:6"); sum.Files != 200 || sum.IncrementalHits != 0 {
		t.Fatalf("first scan: files %d unchanged %d", sum.Files, sum.IncrementalHits)
	}
	if sum := scan("test:6"); sum.Files != 0 || sum.IncrementalHits != 200 {
		t.Fatalf("second scan: files %d unchanged %d, want 0 and 200", sum.Files, sum.IncrementalHits)
	}
	// Same size, new content: mtime and ctime change.
	changed := filepath.Join(base, "tree", "d3", "f010")
	data := bytes.Repeat([]byte("x"), 100+10*37)
	copy(data, clamdtest.EICAR)
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(changed, data[:len(clamdtest.EICAR)], 0o644); err != nil {
		t.Fatal(err)
	}
	sum := scan("test:6")
	if sum.Files != 1 || sum.Detections != 1 || sum.IncrementalHits != 199 {
		t.Fatalf("after a change: files %d detections %d unchanged %d, want 1 1 199", sum.Files, sum.Detections, sum.IncrementalHits)
	}
	if sum := scan("test:6"); sum.Detections != 1 {
		t.Fatalf("an infected file was remembered as clean: %+v", sum)
	}
	if sum := scan("test:7"); sum.Files != 200 || sum.IncrementalHits != 0 {
		t.Fatalf("new definitions: files %d unchanged %d, want 200 0", sum.Files, sum.IncrementalHits)
	}
	if sum := scan(""); sum.Files != 200 {
		t.Fatalf("unknown definitions: files %d, want 200", sum.Files)
	}
}

// TestUnreadableFiles: as root every mode is readable, so the scan runs in
// a child process without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv
// drops them from the bounding set; root's exec then loses them). A mode
// 000 file and a mode 000 directory then fail to open with EACCES, as they
// would for an agent confined by an LSM or on root-squashed NFS.
func TestUnreadableFiles(t *testing.T) {
	testutil.NeedRoot(t)
	setpriv := testutil.NeedCommand(t, "setpriv")
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	base := t.TempDir()
	write(t, filepath.Join(base, "ok.txt"), []byte("fine"))
	write(t, filepath.Join(base, "secret.com"), clamdtest.EICAR)
	write(t, filepath.Join(base, "locked", "inner.com"), clamdtest.EICAR)
	os.Chmod(filepath.Join(base, "secret.com"), 0)
	os.Chmod(filepath.Join(base, "locked"), 0)
	cmd := exec.Command(setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", os.Args[0])
	cmd.Env = append(os.Environ(), "AVFLEET_SCAN_HELPER=1", "AVFLEET_SCAN_HELPER_CLAMD="+r.Socket, "AVFLEET_SCAN_HELPER_PATH="+base)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	got := map[string]string{}
	for _, e := range res.Events {
		got[strings.TrimPrefix(e.Path, base)] = e.Reason
		if e.Reason == ReasonUnreadable && !strings.Contains(e.Err, "permission denied") {
			t.Errorf("%s: error %q does not say why", e.Path, e.Err)
		}
	}
	want := map[string]string{"/secret.com": ReasonUnreadable, "/locked": ReasonUnreadable}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if s := res.Summary; s.Files != 1 || s.Errors != 2 || s.Detections != 0 || s.SkippedByReason[ReasonUnreadable] != 2 {
		t.Errorf("summary files %d errors %d detections %d reasons %v", s.Files, s.Errors, s.Detections, s.SkippedByReason)
	}
}

const sleeperSource = `package main

import (
	"os"
	"strconv"
	"time"
)

// A static "container" process: with an argument N it starts N more copies.
func main() {
	if len(os.Args) > 1 {
		n, _ := strconv.Atoi(os.Args[1])
		for range n {
			// The copies get our stdio: a Go program whose 0, 1 and 2 are
			// closed opens /dev/null, which this root does not have.
			os.StartProcess("/bin/sleeper", []string{"sleeper"}, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
		}
	}
	time.Sleep(time.Hour)
}
`

// buildSleeper compiles a static binary (CGO_ENABLED=0) to run inside a
// root filesystem that holds nothing else.
func buildSleeper(t *testing.T, out string) {
	t.Helper()
	goBin := testutil.NeedCommand(t, "go")
	src := filepath.Join(t.TempDir(), "sleeper.go")
	if err := os.WriteFile(src, []byte(sleeperSource), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(out), 0o755)
	cmd := exec.Command(goBin, "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	cmd.Dir = filepath.Dir(src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the sleeper: %v\n%s", err, b)
	}
}

// testCgroup makes a cgroup named the way Docker names its containers', so
// that the container made by the test carries a runtime id. It returns the
// cgroup.procs file to join it, or "" where cgroups cannot be written.
func testCgroup(t *testing.T, id string) string {
	dir := "/sys/fs/cgroup/pids/docker/" + id // cgroup v1, Docker's cgroupfs driver
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir = "/sys/fs/cgroup/avfleet-test.slice/docker-" + id + ".scope" // v2, Docker's systemd driver
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("cannot make a cgroup (%v): the container gets a pid- id", err)
		return ""
	}
	t.Cleanup(func() {
		// After the processes are gone (cleanups run last-in first-out).
		for range 50 {
			if os.Remove(dir) == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		os.Remove(filepath.Dir(dir))
	})
	return filepath.Join(dir, "cgroup.procs")
}

// TestRealContainer makes a container the way runtimes do at their core
// (an overlay root, new mount and PID namespaces, chroot, several
// processes, a cgroup named like Docker's) and scans the host path that
// holds its layers together with the containers: the container is found
// once, scanned once through /proc/PID/root, its EICAR reported with the
// container id and the in-container path, nothing is followed out of its
// root, its layers are not scanned again through the host path, and a
// moved file is restored into the container.
func TestRealContainer(t *testing.T) {
	testutil.NeedRoot(t)
	unshare := testutil.NeedCommand(t, "unshare")
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	base := t.TempDir()
	host := filepath.Join(base, "host") // the host path scanned
	lower, upper, work, merged := filepath.Join(host, "layers", "lower"), filepath.Join(host, "layers", "upper"),
		filepath.Join(host, "layers", "work"), filepath.Join(host, "merged")
	for _, d := range []string{lower, upper, work, merged, filepath.Join(lower, "etc"), filepath.Join(lower, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	buildSleeper(t, filepath.Join(lower, "bin", "sleeper"))
	eicar := filepath.Join(lower, "tmp", "eicar.com")
	write(t, eicar, clamdtest.EICAR)
	os.Chown(eicar, 1234, 1234)
	os.Chmod(eicar, 0o640)
	outside := filepath.Join(base, "outside") // not under the host path: found only if a link is followed
	write(t, filepath.Join(outside, "eicar.com"), clamdtest.EICAR)
	os.Symlink("/etc/shadow", filepath.Join(lower, "etc", "shadow-link"))
	os.Symlink(outside, filepath.Join(lower, "escape-dir"))
	os.Symlink(filepath.Join(outside, "eicar.com"), filepath.Join(lower, "escape-file"))
	os.Symlink("../../../../..", filepath.Join(lower, "tmp", "up"))
	if b, err := exec.Command("mount", "-t", "overlay", "overlay", "-o",
		"lowerdir="+lower+",upperdir="+upper+",workdir="+work, merged).CombinedOutput(); err != nil {
		testutil.Skip(t, fmt.Sprintf("cannot mount an overlay: %v %s", err, b))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", merged).Run() })

	const id = "c0ffee00a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c"
	procs := testCgroup(t, id)
	script := `exec "$2" --mount --pid --fork chroot "$3" /bin/sleeper 3`
	if procs != "" {
		script = `echo $$ > "$1" && ` + script
	}
	cmd := exec.Command("sh", "-c", script, "sh", procs, unshare, merged)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})

	// Wait for the 4 processes of the container (1 + 3 copies).
	var root syscall.Stat_t
	if err := syscall.Stat(merged, &root); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for deadline := time.Now().Add(15 * time.Second); ; {
		pids = pidsWithRoot(root.Dev, root.Ino)
		if len(pids) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container processes did not start: %v", pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantID := id
	if procs == "" {
		wantID = "pid-" + strconv.Itoa(pids[0])
	}

	var dets []report.Detection
	sink := report.SinkFunc(func(_ context.Context, ev report.Event) error {
		if d, ok := ev.(report.Detection); ok {
			dets = append(dets, d)
		}
		return nil
	})
	s := realScanner(t, r, Config{
		Exclude: config.DefaultAgent().Scan.Exclude, Action: report.ActionMove,
		QuarantineDir: filepath.Join(base, "quarantine"), Sink: sink,
	})
	var col collector
	sum, err := s.Run(context.Background(), Options{Paths: []string{host}, Containers: true, OnFile: col.add})
	if err != nil {
		t.Fatal(err)
	}

	// Exactly one detection: the container's file, through the lowest PID.
	if len(dets) != 1 {
		t.Fatalf("detections %+v, want only the container's /tmp/eicar.com", dets)
	}
	d := dets[0]
	wantPath := fmt.Sprintf("/proc/%d/root/tmp/eicar.com", pids[0])
	if d.Container != wantID || d.ContainerPath != "/tmp/eicar.com" || d.Path != wantPath || d.ActionResult != report.ActionOK {
		t.Errorf("detection %+v, want container %s, /tmp/eicar.com via %s, moved", d, wantID, wantPath)
	}
	// unshare itself is in the new mount namespace but keeps the host's root:
	// not a container (else the whole host would have been scanned through it).
	for _, e := range col.events {
		if strings.HasPrefix(e.Path, fmt.Sprintf("/proc/%d/", cmd.Process.Pid)) {
			t.Fatalf("unshare (own mount namespace, host root) was taken for a container: %+v", e)
		}
	}
	// The container was walked once; its links were not followed.
	var ours []string
	skipped := map[string]string{}
	for _, e := range col.events {
		if e.Container == wantID {
			ours = append(ours, e.ContainerPath)
		}
		if e.Container == "" {
			skipped[strings.TrimPrefix(e.Path, host)] = e.Reason
		}
	}
	slices.Sort(ours)
	want := []string{"/escape-dir", "/escape-file", "/etc/shadow-link", "/tmp/eicar.com", "/tmp/up"}
	if !slices.Equal(ours, want) {
		t.Errorf("container events %v, want %v (each once)", ours, want)
	}
	// Through the host path, the merged root and the layers are not scanned again.
	for p, reason := range map[string]string{"/merged": ReasonAlreadyScanned, "/layers/lower": ReasonContainerLayer,
		"/layers/upper": ReasonContainerLayer, "/layers/work": ReasonContainerLayer} {
		if skipped[p] != reason {
			t.Errorf("host %s: %q, want %q (all host events: %v)", p, skipped[p], reason, skipped)
		}
	}
	if sum.Containers < 1 || sum.Detections != 1 {
		t.Errorf("summary containers %d detections %d", sum.Containers, sum.Detections)
	}

	// Moved out of the container; restored into it with owner and mode.
	inside := filepath.Join(fmt.Sprintf("/proc/%d/root", pids[0]), "tmp", "eicar.com")
	if _, err := os.Lstat(inside); !os.IsNotExist(err) {
		t.Fatalf("moved file still in the container: %v", err)
	}
	where, err := s.quar.Restore(d.QuarantineID)
	if err != nil {
		t.Fatal(err)
	}
	if where != wantID+":/tmp/eicar.com" {
		t.Errorf("restored to %q", where)
	}
	st := stateOf(t, inside)
	if !bytes.Equal(st.data, clamdtest.EICAR) || st.uid != 1234 || st.gid != 1234 || st.mode != 0o640 {
		t.Errorf("restored in the container: %+v", st)
	}
}

// pidsWithRoot lists, in order, the processes whose root is dev/ino.
func pidsWithRoot(dev, ino uint64) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/root", &st) == nil && st.Dev == dev && st.Ino == ino {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// TestRealTCP scans over TCP (INSTREAM): a file past clamd's StreamMaxLength
// is counted as clamd_limit and the scan goes on with a new connection.
func TestRealTCP(t *testing.T) {
	r := clamdtest.StartReal(t, clamdtest.RealOptions{TCP: true, Conf: []string{"StreamMaxLength 1M"}})
	base := t.TempDir()
	write(t, filepath.Join(base, "eicar.com"), clamdtest.EICAR)
	write(t, filepath.Join(base, "small"), bytes.Repeat([]byte("s"), 10<<10))
	write(t, filepath.Join(base, "big"), bytes.Repeat([]byte("b"), 2<<20))
	cl, err := clamd.NewClient(r.TCP)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Engine: ClamdEngine(cl), Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var col collector
	sum, err := s.Run(context.Background(), Options{Paths: []string{base}, OnFile: col.add})
	if err != nil {
		t.Fatal(err)
	}
	got := col.byReason()
	if sum.Files != 2 || sum.Detections != 1 || !slices.Equal(got[ReasonClamdLimit], []string{filepath.Join(base, "big")}) ||
		!slices.Equal(got["FOUND:Eicar-Test-Signature"], []string{filepath.Join(base, "eicar.com")}) {
		t.Errorf("summary %+v, events %v", sum, got)
	}
}

// TestMountBoundaries: one_filesystem stops at mount points; kernel
// filesystems are never entered even when not excluded.
func TestMountBoundaries(t *testing.T) {
	testutil.NeedRoot(t)
	base := t.TempDir()
	tmp, proc := filepath.Join(base, "tmpfs"), filepath.Join(base, "proc")
	os.Mkdir(tmp, 0o755)
	os.Mkdir(proc, 0o755)
	for _, m := range [][]string{{"-t", "tmpfs", "tmpfs", tmp}, {"-t", "proc", "proc", proc}} {
		if b, err := exec.Command("mount", m...).CombinedOutput(); err != nil {
			testutil.Skip(t, fmt.Sprintf("mount %v: %v %s", m, err, b))
		}
		t.Cleanup(func() { exec.Command("umount", "-l", m[3]).Run() })
	}
	write(t, filepath.Join(tmp, "eicar.com"), clamdtest.EICAR)
	write(t, filepath.Join(base, "here.txt"), []byte("x"))
	for _, oneFS := range []bool{false, true} {
		s, _ := fakeScanner(t, Config{OneFilesystem: oneFS})
		var col collector
		sum, err := s.Run(context.Background(), Options{Paths: []string{base}, OnFile: col.add})
		if err != nil {
			t.Fatal(err)
		}
		got := col.byReason()
		if oneFS {
			if !slices.Equal(got[ReasonOtherFS], []string{proc, tmp}) || sum.Detections != 0 || sum.Files != 1 {
				t.Errorf("one_filesystem: %v %+v", got, sum)
			}
		} else if !slices.Equal(got[ReasonPseudoFS], []string{proc}) || sum.Detections != 1 || sum.Files != 2 {
			t.Errorf("across filesystems: %v %+v", got, sum)
		}
	}
}
