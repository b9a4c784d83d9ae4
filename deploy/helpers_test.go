package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

var root = testutil.RepoRoot()

// testVersion is what a binary built here reports; a .deb made from it
// must carry the matching Debian version.
const testVersion = "v0.0.0-deploytest"

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string

	tempDirs []string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// avfleetBin returns $AVFLEET_BIN (make test builds it) or a static binary
// built once for this package's tests.
func avfleetBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("AVFLEET_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("AVFLEET_BIN=%s: %v", p, err)
		}
		return p
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "avfleet-deploy-test-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "avfleet")
		cmd := exec.Command("go", "build", "-trimpath",
			"-ldflags", "-s -w -X github.com/avfleet/avfleet/internal/version.Version="+testVersion,
			"-o", binPath, "./cmd/avfleet")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out []byte
		if out, binErr = cmd.CombinedOutput(); binErr != nil {
			binErr = &buildError{out: string(out), err: binErr}
		}
	})
	if binErr != nil {
		t.Fatalf("build avfleet: %v", binErr)
	}
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// run runs a command with a deadline and returns its stdout and stderr.
func run(t *testing.T, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustRun runs a command and fails the test when it fails.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// binVersion is the version the binary reports on its first line.
func binVersion(t *testing.T, bin string) string {
	t.Helper()
	out := mustRun(t, bin, "version")
	f := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if len(f) != 2 || f[0] != "avfleet" {
		t.Fatalf("%s version: first line %q, want \"avfleet VERSION\"", bin, out)
	}
	return f[1]
}
