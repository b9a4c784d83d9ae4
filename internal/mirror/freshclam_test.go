package mirror

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/testutil"
)

// Stock freshclam (Debian 1.4) against the real mirror binary, with real
// ClamAV test databases and mutual TLS.

// freshclamRun runs freshclam once on dbDir against mirror URL url (with
// DatabaseMirror, or PrivateMirror when private) and returns its output.
func freshclamRun(t *testing.T, e *mirrorEnv, dbDir string, private bool, cert string) (string, error) {
	t.Helper()
	bin := testutil.NeedCommand(t, "freshclam")
	owner := "root"
	if u, err := user.Current(); err == nil {
		owner = u.Username
	}
	mirrorKey := "DatabaseMirror"
	if private {
		mirrorKey = "PrivateMirror"
	}
	conf := strings.Join([]string{
		"DatabaseDirectory " + dbDir,
		mirrorKey + " https://" + e.https,
		"DNSDatabaseInfo no",
		"DatabaseOwner " + owner,
		"ExtraDatabase test",
		"ExcludeDatabase main",
		"ExcludeDatabase daily",
		"ExcludeDatabase bytecode",
		"MaxAttempts 1",
		"ConnectTimeout 10",
		"ReceiveTimeout 30",
		"",
	}, "\n")
	cf := filepath.Join(t.TempDir(), "freshclam.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config-file="+cf, "--foreground", "--stdout", "--no-dns")
	env := []string{"CURL_CA_BUNDLE=" + filepath.Join(e.pki, "ca.crt")}
	if cert != "" {
		env = append(env, "FRESHCLAM_CLIENT_CERT="+filepath.Join(e.pki, cert+".crt"), "FRESHCLAM_CLIENT_KEY="+filepath.Join(e.pki, cert+".key"))
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRESHCLAM_") && !strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dbDirWith makes a freshclam database directory holding test-N.cvd as test.cvd.
func dbDirWith(t *testing.T, td string, n int) string {
	t.Helper()
	dir := t.TempDir()
	if n > 0 {
		copyFile(t, filepath.Join(dir, "test.cvd"), filepath.Join(td, fmt.Sprintf("test-%d.cvd", n)))
	}
	return dir
}

// since returns the requests logged after the first n.
func since(p *mirrorProc, n int) []requestLine { return p.requests()[n:] }

func paths(rs []requestLine) string {
	var s []string
	for _, r := range rs {
		x := r.path + " " + r.status
		if r.rng != "" {
			x += " " + r.rng
		}
		s = append(s, x)
	}
	return strings.Join(s, ", ")
}

// importTestChain runs `avfleet mirror import` with test-1.cvd, the cdiffs
// and optionally test-6.cvd (their .sign files travel with them).
func importTestChain(t *testing.T, e *mirrorEnv, td string, withFull6 bool) {
	t.Helper()
	args := []string{"mirror", "import", "--config", e.cfg, filepath.Join(td, "test-1.cvd")}
	for v := 2; v <= 6; v++ {
		args = append(args, filepath.Join(td, fmt.Sprintf("test-%d.cdiff", v)))
	}
	if withFull6 {
		args = append(args, filepath.Join(td, "test-6.cvd"))
	}
	out, errOut, code := runAvfleet(t, args...)
	if code != 0 || strings.Contains(out, "rejected") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
}

func TestFreshclamUpdatesFromMirror(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	testutil.NeedCommand(t, "freshclam")
	e := newMirrorEnv(t, "")
	m := e.startMirror(t)
	// Imported while the daemon runs: it serves the new set on its own.
	importTestChain(t, e, td, true)
	waitFor(t, "daemon to serve test 6", func() bool {
		man := e.manifest(t, e.client(t, "node1"))
		return len(man.Databases) == 1 && man.Databases[0].Version == 6
	})

	t.Run("cdiff chain", func(t *testing.T) {
		db := dbDirWith(t, td, 1)
		n := len(m.requests())
		out, err := freshclamRun(t, e, db, false, "freshclam")
		if err != nil || !strings.Contains(out, "test.cld updated (version: 6") {
			t.Fatalf("freshclam: %v\n%s", err, out)
		}
		rs := since(m, n)
		got := paths(rs)
		for v := 2; v <= 6; v++ {
			if !strings.Contains(got, fmt.Sprintf("/test-%d.cdiff 200", v)) {
				t.Errorf("cdiff %d not fetched: %s", v, got)
			}
		}
		for _, r := range rs {
			if r.path == "/test.cvd" && r.rng != "bytes=0-511" {
				t.Errorf("freshclam downloaded the full CVD instead of the cdiffs: %s", got)
			}
		}
		if _, err := cvd.Verify(filepath.Join(db, "test.cld"), nil); err != nil {
			t.Errorf("freshclam's result does not verify: %v", err)
		}

		// Current now: a 304, no download.
		n = len(m.requests())
		out, err = freshclamRun(t, e, db, false, "freshclam")
		if err != nil || !strings.Contains(out, "database is up-to-date (version: 6") {
			t.Fatalf("second run: %v\n%s", err, out)
		}
		if got := paths(since(m, n)); got != "/test.cvd 304 bytes=0-511" {
			t.Errorf("up-to-date check made requests %q, want one 304", got)
		}
	})

	t.Run("partial chain", func(t *testing.T) {
		db := dbDirWith(t, td, 3)
		n := len(m.requests())
		out, err := freshclamRun(t, e, db, false, "freshclam")
		if err != nil || !strings.Contains(out, "test.cld updated (version: 6") {
			t.Fatalf("freshclam: %v\n%s", err, out)
		}
		got := paths(since(m, n))
		if strings.Contains(got, "test-2.cdiff") || strings.Contains(got, "test-3.cdiff") || !strings.Contains(got, "/test-4.cdiff 200, /test-5.cdiff 200, /test-6.cdiff 200") {
			t.Errorf("requests from version 3: %s", got)
		}
	})

	t.Run("without a client certificate", func(t *testing.T) {
		db := dbDirWith(t, td, 1)
		n := len(m.requests())
		before := scrapeValue(t, e, `avfleet_mirror_tls_handshake_failures_total{reason="no_certificate"}`)
		out, err := freshclamRun(t, e, db, false, "")
		if err == nil || strings.Contains(out, "updated") {
			t.Fatalf("freshclam without a certificate succeeded:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(db, "test.cld")); err == nil {
			t.Error("a database was written")
		}
		if got := paths(since(m, n)); got != "" {
			t.Errorf("requests reached HTTP without a certificate: %s", got)
		}
		if after := scrapeValue(t, e, `avfleet_mirror_tls_handshake_failures_total{reason="no_certificate"}`); after <= before {
			t.Errorf("refused handshakes not counted: %v -> %v", before, after)
		}
	})

	t.Run("SIGHUP reloads the server certificate", func(t *testing.T) {
		serial := func() string {
			r, err := e.client(t, "node1").Get("https://" + e.https + "/dns.txt")
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			return r.TLS.PeerCertificates[0].SerialNumber.String()
		}
		before := serial()
		renewServerCert(t, e)
		if err := m.cmd.Process.Signal(sighup); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "new certificate after SIGHUP", func() bool { return serial() != before })
	})
	m.stop(t) // SIGTERM: exit status 0
}

// TestFreshclamFallsBackToFullCVD: the mirror keeps only the last 3 cdiffs
// (retention), so a client at version 1 finds test-2.cdiff missing and must
// download the full CVD, which is test-6.
func TestFreshclamFallsBackToFullCVD(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	testutil.NeedCommand(t, "freshclam")
	e := newMirrorEnv(t, "retention: {cdiffs: 3, versions: 5}\n")
	importTestChain(t, e, td, true)
	m := e.startMirror(t)
	db := dbDirWith(t, td, 1)
	out, err := freshclamRun(t, e, db, false, "freshclam")
	if err != nil || !strings.Contains(out, "test.cvd updated (version: 6") {
		t.Fatalf("freshclam: %v\n%s", err, out)
	}
	got := paths(m.requests())
	if !strings.Contains(got, "/test-2.cdiff 404") || !strings.Contains(got, "/test.cvd 200") {
		t.Errorf("requests: %s", got)
	}
	b, _ := os.ReadFile(filepath.Join(db, "test.cvd"))
	want, _ := os.ReadFile(filepath.Join(td, "test-6.cvd"))
	if string(b) != string(want) {
		t.Error("the full CVD freshclam holds is not test-6.cvd")
	}
}

// TestFreshclamPrivateMirrorGetsCLD: a mirror with test-1.cvd and the
// cdiffs only (no test-6.cvd) serves the patched CLD; freshclam's
// PrivateMirror mode asks for /test.cld first and ends at version 6.
func TestFreshclamPrivateMirrorGetsCLD(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	testutil.NeedCommand(t, "freshclam")
	e := newMirrorEnv(t, "")
	importTestChain(t, e, td, false)
	m := e.startMirror(t)
	db := dbDirWith(t, td, 1)
	out, err := freshclamRun(t, e, db, true, "freshclam")
	if err != nil || !strings.Contains(out, "test.cld updated (version: 6") {
		t.Fatalf("freshclam: %v\n%s", err, out)
	}
	got := paths(m.requests())
	if !strings.Contains(got, "/test.cld 200") || strings.Contains(got, ".cdiff") {
		t.Errorf("requests: %s", got)
	}
	if _, err := cvd.Verify(filepath.Join(db, "test.cld"), nil); err != nil {
		t.Errorf("downloaded CLD does not verify: %v", err)
	}
	n := len(m.requests())
	out, err = freshclamRun(t, e, db, true, "freshclam")
	if err != nil || !strings.Contains(out, "up-to-date") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if got := paths(since(m, n)); got != "/test.cld 304 bytes=0-511" {
		t.Errorf("second run requests: %s", got)
	}
}
