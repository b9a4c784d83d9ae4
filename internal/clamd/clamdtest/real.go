package clamdtest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

// RealOptions configures StartReal.
type RealOptions struct {
	// Databases are files copied into the database directory; empty means
	// test-6.cvd from the ClamAV test data (10 signatures, detects EICAR and
	// clam.exe).
	Databases []string
	// TCP also opens a TCPSocket on a free loopback port.
	TCP bool
	// Conf holds extra clamd.conf lines, e.g. "StreamMaxLength 1M".
	Conf []string
}

// Real is a real clamd started for one test.
type Real struct {
	Dir    string // holds clamd.conf, db/ and clamd.sock
	DBDir  string
	Socket string // unix:///.../clamd.sock
	TCP    string // tcp://127.0.0.1:PORT when RealOptions.TCP
	PID    int

	cmd  *exec.Cmd
	log  *testutil.SyncBuffer
	done chan struct{}
}

// StartReal starts the installed clamd in the foreground with a generated
// clamd.conf in a temp dir, waits until it answers PING (at most 30 s), and
// stops it when the test ends. It skips (fails under AVFLEET_TEST_NO_SKIP)
// when clamd or the test databases are missing.
func StartReal(t testing.TB, o RealOptions) *Real {
	t.Helper()
	bin := testutil.NeedCommand(t, "clamd")
	dbs := o.Databases
	if len(dbs) == 0 {
		dbs = []string{filepath.Join(testutil.ClamAVTestdata(t), "test-6.cvd")}
	}
	// A short dir: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "clamd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &Real{Dir: dir, DBDir: filepath.Join(dir, "db"), log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	if err := os.Mkdir(r.DBDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, db := range dbs {
		if err := copyFile(db, filepath.Join(r.DBDir, filepath.Base(db))); err != nil {
			t.Fatalf("clamdtest: copy database: %v", err)
		}
	}
	sock := filepath.Join(dir, "clamd.sock")
	r.Socket = "unix://" + sock
	conf := []string{
		"Foreground yes",
		"LocalSocket " + sock,
		"DatabaseDirectory " + r.DBDir,
		"TemporaryDirectory " + dir,
		"LogTime no",
		"LogSyslog no",
		"SelfCheck 0",
		"MaxThreads 2",
	}
	if o.TCP {
		port, err := freePort()
		if err != nil {
			t.Fatalf("clamdtest: find a free port: %v", err)
		}
		conf = append(conf, "TCPSocket "+port, "TCPAddr 127.0.0.1")
		r.TCP = "tcp://127.0.0.1:" + port
	}
	conf = append(conf, o.Conf...)
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "--config-file="+confPath)
	r.cmd.Stdout = r.log
	r.cmd.Stderr = r.log
	setPdeathsig(r.cmd)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("clamdtest: start %s: %v", bin, err)
	}
	r.PID = r.cmd.Process.Pid
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(r.Stop)

	deadline := time.Now().Add(30 * time.Second)
	for {
		if pingRaw(sock) == nil {
			return r
		}
		select {
		case <-r.done:
			t.Fatalf("clamdtest: clamd exited during startup (%v); its output:\n%s", r.cmd.ProcessState, r.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("clamdtest: clamd did not answer PING within 30s; its output:\n%s", r.Log())
		}
	}
}

// Log returns what clamd printed so far (stdout and stderr).
func (r *Real) Log() string { return r.log.String() }

// WaitLog waits until clamd's output contains s, failing the test after d.
func (r *Real) WaitLog(t testing.TB, s string, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for !strings.Contains(r.Log(), s) {
		if time.Now().After(end) {
			t.Fatalf("clamd did not log %q within %v; its output:\n%s", s, d, r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends clamd: SIGTERM, then SIGKILL after 5 s.
func (r *Real) Stop() {
	select {
	case <-r.done:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// pingRaw checks that clamd answers PING, without package clamd.
func pingRaw(sock string) error {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "PONG\x00" {
		return fmt.Errorf("PING answered %q", b)
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
