package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/testutil"
)

func realDB(t *testing.T, name string) string {
	return filepath.Join(testutil.ClamAVTestdata(t), name)
}

func copyTo(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCVDVerifyCommand(t *testing.T) {
	var files []string
	for v := 1; v <= 6; v++ {
		files = append(files, realDB(t, fmt.Sprintf("test-%d.cvd", v)))
		if v > 1 {
			files = append(files, realDB(t, fmt.Sprintf("test-%d.cdiff", v)))
		}
	}
	code, out, errOut := runCLI(t, append([]string{"cvd", "verify"}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(files) {
		t.Fatalf("%d lines for %d files:\n%s", len(lines), len(files), out)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, files[i]+": OK ") || !strings.Contains(l, "signed by clamav") {
			t.Errorf("line %q", l)
		}
	}

	certs := t.TempDir()
	ca, err := os.ReadFile(realDB(t, "clamav-test-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	copyTo(t, certs, "clamav-test-ca.crt", ca)
	code, out, _ = runCLI(t, "cvd", "verify", "--certs-dir", certs, "--require-sign", realDB(t, "test-6.cvd"))
	if code != 0 || !strings.Contains(out, ".sign verified (test-6.cvd.sign)") {
		t.Errorf("with certs: exit %d: %s", code, out)
	}
	// ClamAV 1.5 mirrors' naming: daily-VERSION.cvd.sign beside daily.cvd.
	named := t.TempDir()
	for from, to := range map[string]string{"test-6.cvd": "test.cvd", "test-6.cvd.sign": "test-6.cvd.sign"} {
		b, err := os.ReadFile(realDB(t, from))
		if err != nil {
			t.Fatal(err)
		}
		copyTo(t, named, to, b)
	}
	code, out, _ = runCLI(t, "cvd", "verify", "--certs-dir", certs, "--require-sign", filepath.Join(named, "test.cvd"))
	if code != 0 || !strings.Contains(out, ".sign verified (test-6.cvd.sign)") {
		t.Errorf("DB-VERSION.cvd.sign beside DB.cvd: exit %d: %s", code, out)
	}

	// One bad file among good ones: exit 1, one FAIL line naming the check.
	dir := t.TempDir()
	good, err := os.ReadFile(realDB(t, "test-6.cvd"))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)-10] ^= 0x20
	badPath := copyTo(t, dir, "daily.cvd", bad)
	code, out, _ = runCLI(t, "cvd", "verify", realDB(t, "test-5.cvd"), badPath)
	if code != 1 || !strings.Contains(out, badPath+": FAIL body-md5: ") || !strings.Contains(out, "test-5.cvd: OK") {
		t.Errorf("bad file: exit %d: %s", code, out)
	}
	html := copyTo(t, dir, "main.cvd", []byte("<html><body>403 Forbidden</body></html>"))
	code, out, _ = runCLI(t, "cvd", "verify", html)
	if code != 1 || !strings.Contains(out, "FAIL format: an HTML") {
		t.Errorf("html: exit %d: %s", code, out)
	}
	// I/O errors and usage errors: exit 2.
	code, out, _ = runCLI(t, "cvd", "verify", filepath.Join(dir, "missing.cvd"), badPath)
	if code != 2 || !strings.Contains(out, "FAIL io: ") {
		t.Errorf("missing file: exit %d: %s", code, out)
	}
	if code, _, errOut := runCLI(t, "cvd", "verify", "--require-sign", badPath); code != 2 || !strings.Contains(errOut, "--certs-dir") {
		t.Errorf("--require-sign without certs: exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "cvd", "verify", "--key", badPath, badPath); code != 2 {
		t.Errorf("--key that is not a key: exit %d", code)
	}
	if code, _, _ := runCLI(t, "cvd", "verify"); code != 2 {
		t.Errorf("no files: exit %d", code)
	}

	// --json: one document, snake_case.
	code, out, _ = runCLI(t, "cvd", "verify", "--json", realDB(t, "test-6.cvd"), badPath)
	if code != 1 {
		t.Errorf("json: exit %d", code)
	}
	var doc struct {
		Files []struct {
			Path   string         `json:"path"`
			Valid  bool           `json:"valid"`
			Check  string         `json:"check"`
			Reason string         `json:"reason"`
			Info   map[string]any `json:"info"`
		} `json:"files"`
		AllValid *bool `json:"all_valid"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(doc.Files) != 2 || !doc.Files[0].Valid || doc.Files[1].Valid || doc.Files[1].Check != "body-md5" || doc.AllValid == nil || *doc.AllValid {
		t.Errorf("json: %s", out)
	}
	info := doc.Files[0].Info
	hdr, _ := info["header"].(map[string]any)
	if info["signed_by"] != "clamav" || info["sign_status"] != "unchecked" || hdr["build_time"] == nil || hdr["flevel"] != 81.0 {
		t.Errorf("json info keys: %v", info)
	}
}

func TestCVDInfoCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "cvd", "info", realDB(t, "test-6.cvd"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{"ClamAV cvd \"test\"", "version           6", "signatures        14",
		"status            valid, signed by clamav", "test.ndb", "671", "eb9bed3cef08533c0f35c3225fdc2acff88a7ca680b57d83a5ea3915c0d48f73"} {
		if !strings.Contains(out, w) {
			t.Errorf("info lacks %q:\n%s", w, out)
		}
	}
	code, out, _ = runCLI(t, "cvd", "info", "--json", realDB(t, "test-3.cdiff"))
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || doc["kind"] != "cdiff" || doc["cdiff_version"] != 3.0 || doc["status"] != "valid" {
		t.Errorf("cdiff json: exit %d %v: %s", code, err, out)
	}

	// A readable database whose signature fails: shown, status invalid, exit 0.
	dir := t.TempDir()
	b, _ := os.ReadFile(realDB(t, "test-6.cvd"))
	i := bytes.Index(b, []byte(":micasnyd:")) - 30 // inside the header signature
	b[i]++
	p := copyTo(t, dir, "test.cvd", b)
	code, out, _ = runCLI(t, "cvd", "info", p)
	if code != 0 || !strings.Contains(out, "INVALID: header-signature:") || !strings.Contains(out, "test.hdb") {
		t.Errorf("bad signature: exit %d:\n%s", code, out)
	}
	// Not a database: exit 2.
	code, _, errOut = runCLI(t, "cvd", "info", copyTo(t, dir, "x.cvd", []byte("<!DOCTYPE html>")))
	if code != 2 || !strings.Contains(errOut, "format: an HTML") {
		t.Errorf("html: exit %d: %s", code, errOut)
	}
}

// clamscanFinds runs stock clamscan with only dbdir's databases on a fresh
// EICAR file and returns its output.
func clamscanFinds(t *testing.T, dbdir string, files ...string) string {
	t.Helper()
	bin := testutil.NeedCommand(t, "clamscan")
	eicar := copyTo(t, t.TempDir(), "eicar.com", []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`))
	out, err := exec.Command(bin, append([]string{"--no-summary", "-d", dbdir, eicar}, files...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("clamscan: %v\n%s", err, out)
	}
	return strings.ReplaceAll(string(out), eicar, "EICAR")
}

func TestCVDPatchCommand(t *testing.T) {
	dir := t.TempDir()
	dbdir := t.TempDir()
	out := filepath.Join(dbdir, "test.cld")
	args := []string{"cvd", "patch", realDB(t, "test-1.cvd")}
	for v := 2; v <= 6; v++ {
		args = append(args, realDB(t, fmt.Sprintf("test-%d.cdiff", v)))
	}
	code, stdout, errOut := runCLI(t, append(args, "-o", out)...)
	if code != 0 || !strings.Contains(stdout, out+": OK cld test version 6") {
		t.Fatalf("exit %d: %s%s", code, stdout, errOut)
	}
	if code, stdout, _ := runCLI(t, "cvd", "verify", out); code != 0 {
		t.Errorf("patched file does not verify: %s", stdout)
	}
	clam := "/usr/share/clamav-testfiles/clam.exe"
	testutil.NeedFile(t, clam)
	if got := clamscanFinds(t, dbdir, clam); !strings.Contains(got, "EICAR: Eicar-Test-Signature FOUND") ||
		!strings.Contains(got, clam+": Clamav.Test.File-6 FOUND") {
		t.Errorf("clamscan with the patched CLD:\n%s", got)
	}
	// A chain with a gap: refused, nothing written.
	gap := filepath.Join(dir, "gap.cld")
	code, _, errOut = runCLI(t, "cvd", "patch", realDB(t, "test-1.cvd"), realDB(t, "test-3.cdiff"), "-o", gap)
	if code != 1 || !strings.Contains(errOut, "version: ") {
		t.Errorf("gap: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(gap); err == nil {
		t.Error("gap: output written")
	}
	for _, bad := range [][]string{
		{"cvd", "patch", realDB(t, "test-1.cvd"), realDB(t, "test-2.cdiff"), "-o", filepath.Join(dir, "x.cvd")},
		{"cvd", "patch", realDB(t, "test-1.cvd"), realDB(t, "test-2.cdiff")},
		{"cvd", "patch", filepath.Join(dir, "missing.cvd"), realDB(t, "test-2.cdiff"), "-o", filepath.Join(dir, "y.cld")},
	} {
		if code, _, _ := runCLI(t, bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad[2:], code)
		}
	}
}

func TestKeysGenerateAndCVDBuild(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "acme")
	code, out, errOut := runCLI(t, "keys", "generate", "-o", prefix)
	if code != 0 || !strings.Contains(out, "fingerprint key:") {
		t.Fatalf("keys generate: exit %d: %s%s", code, out, errOut)
	}
	fp := strings.TrimSpace(out[strings.Index(out, "fingerprint ")+len("fingerprint "):])
	if st, err := os.Stat(prefix + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", st, err)
	}
	if code, _, _ := runCLI(t, "keys", "generate", "-o", prefix); code != 2 {
		t.Errorf("overwrite without --force: exit %d", code)
	}
	if code, _, _ := runCLI(t, "keys", "generate"); code != 2 {
		t.Errorf("no -o: exit %d", code)
	}

	hdb := copyTo(t, dir, "acme.hdb", []byte("44d88612fea8a8f36de82e1278abb02f:68:Acme.Eicar\n"))
	cvdPath := filepath.Join(dir, "acme.cvd")
	code, out, errOut = runCLI(t, "cvd", "build", "--key", prefix+".key", "--name", "acme", "--version", "4",
		"--builder", "secops", "--flevel", "120", "-o", cvdPath, hdb)
	if code != 0 || !strings.Contains(out, "signed by "+fp) {
		t.Fatalf("build: exit %d: %s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "cvd", "verify", "--key", prefix+".pub.pem", cvdPath)
	if code != 0 || !strings.Contains(out, "OK cvd acme version 4 (1 sigs, f-level 120") || !strings.Contains(out, "signed by "+fp) {
		t.Errorf("verify with key: exit %d: %s", code, out)
	}
	code, out, _ = runCLI(t, "cvd", "verify", cvdPath)
	if code != 1 || !strings.Contains(out, "FAIL header-signature") {
		t.Errorf("verify without key: exit %d: %s", code, out)
	}

	dbdir := t.TempDir()
	cud := filepath.Join(dbdir, "acme.cud")
	if code, out, errOut := runCLI(t, "cvd", "build", "--unsigned", "--name", "acme", "--version", "1", "-o", cud, hdb); code != 0 {
		t.Fatalf("unsigned build: exit %d: %s%s", code, out, errOut)
	}
	if got := clamscanFinds(t, dbdir); !strings.Contains(got, "EICAR: Acme.Eicar.UNOFFICIAL FOUND") {
		t.Errorf("clamscan with the CUD:\n%s", got)
	}
	if code, out, _ := runCLI(t, "cvd", "verify", "--allow-unsigned", cud); code != 0 || !strings.Contains(out, "OK cud acme") {
		t.Errorf("cud: exit %d: %s", code, out)
	}
	if code, out, _ := runCLI(t, "cvd", "verify", cud); code != 1 || !strings.Contains(out, "FAIL unsigned") {
		t.Errorf("cud without --allow-unsigned: exit %d: %s", code, out)
	}

	for _, bad := range [][]string{
		{"cvd", "build", "--name", "acme", "--version", "1", "-o", filepath.Join(dir, "a.cvd"), hdb},
		{"cvd", "build", "--key", prefix + ".key", "--unsigned", "--name", "acme", "--version", "1", "-o", filepath.Join(dir, "a.cvd"), hdb},
		{"cvd", "build", "--key", prefix + ".pub.pem", "--name", "acme", "--version", "1", "-o", filepath.Join(dir, "a.cvd"), hdb},
		{"cvd", "build", "--key", prefix + ".key", "--name", "acme", "--version", "1", "-o", filepath.Join(dir, "a.cud"), hdb},
		{"cvd", "build", "--unsigned", "--name", "acme", "--version", "1", "-o", filepath.Join(dir, "a.cvd"), hdb},
		{"cvd", "build", "--key", prefix + ".key", "--name", "acme", "--version", "0", "-o", filepath.Join(dir, "a.cvd"), hdb},
		{"cvd", "build", "--key", prefix + ".key", "--name", "acme", "--version", "1", "-o", filepath.Join(dir, "a.cvd"), filepath.Join(dir, "missing.hdb")},
	} {
		if code, _, _ := runCLI(t, bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad[1:], code)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a.cvd")); err == nil {
		t.Error("a failed build left its output")
	}
}
