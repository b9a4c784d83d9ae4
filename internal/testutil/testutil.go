// Package testutil holds helpers shared by avfleet's tests: finding the real
// ClamAV test data and binaries, and skipping (or, in CI, failing) when
// something a test needs is absent.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// NoSkip reports whether AVFLEET_TEST_NO_SKIP is set: CI sets it so that a
// test missing a dependency fails instead of silently skipping.
func NoSkip() bool { return os.Getenv("AVFLEET_TEST_NO_SKIP") != "" }

// Skip skips the test with reason, or fails it when AVFLEET_TEST_NO_SKIP is set.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if NoSkip() {
		t.Fatalf("AVFLEET_TEST_NO_SKIP is set, but: %s", reason)
	}
	t.Skip(reason) // reached only without AVFLEET_TEST_NO_SKIP (CI sets it)
}

// RepoRoot returns the repository's top directory (the one holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ClamAVTestdata returns the directory of real ClamAV test databases:
// $AVFLEET_CLAMAV_TESTDATA, or ../shared/testdata/clamav beside the
// repository. The test is skipped (failed under AVFLEET_TEST_NO_SKIP) when it
// is missing. The files are read in place, never copied into the repository.
func ClamAVTestdata(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("AVFLEET_CLAMAV_TESTDATA")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared", "testdata", "clamav")
	}
	if _, err := os.Stat(filepath.Join(dir, "test-1.cvd")); err != nil {
		Skip(t, "ClamAV test databases not found (set AVFLEET_CLAMAV_TESTDATA): "+err.Error())
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// NeedCommand returns the path of an installed program (looked up in PATH,
// then /usr/sbin and /usr/bin), skipping the test when it is absent.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	if p, err := LookPath(name); err == nil {
		return p
	}
	Skip(t, name+" is not installed (apt-get install clamav clamav-daemon clamav-freshclam clamav-testfiles)")
	return ""
}

// LookPath finds name in PATH, then in /usr/sbin and /usr/bin, where Debian
// puts clamd even when sbin is not in a non-root PATH.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// NeedFile skips the test when path does not exist (for example the
// clamav-testfiles package's files).
func NeedFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Skip(t, path+" is missing: "+err.Error())
	}
}

// NeedRoot skips the test unless it runs as root (namespaces, cgroups, chown).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}
