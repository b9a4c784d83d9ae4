package cvd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tests on ClamAV's own test databases, signed with its production keys.

func TestVerifyRealDatabases(t *testing.T) {
	sigs := map[int]uint{1: 0, 2: 0, 3: 11, 4: 12, 5: 13, 6: 14}
	for v := 1; v <= 6; v++ {
		name := fmt.Sprintf("test-%d.cvd", v)
		t.Run(name, func(t *testing.T) {
			info, err := Verify(testdata(t, name), nil)
			if err != nil {
				t.Fatal(err)
			}
			if info.Kind != KindCVD || info.Name != "test" || info.Header.Version != uint(v) ||
				info.Header.Sigs != sigs[v] || info.SignedBy != SignedByClamAV || info.Sign != SignUnchecked {
				t.Errorf("got %s %q v%d sigs %d signed by %q sign %q", info.Kind, info.Name, info.Header.Version, info.Header.Sigs, info.SignedBy, info.Sign)
			}
			if info.Files[0].Name != "COPYING" || info.Files[1].Name != "test.info" {
				t.Errorf("members start %v", info.Files[:2])
			}
		})
	}
	for v := 2; v <= 6; v++ {
		name := fmt.Sprintf("test-%d.cdiff", v)
		t.Run(name, func(t *testing.T) {
			info, err := Verify(testdata(t, name), nil)
			if err != nil {
				t.Fatal(err)
			}
			if info.Kind != KindCDiff || info.CDiffVersion != uint(v) || info.SignedBy != SignedByClamAV || info.Name != "test" {
				t.Errorf("got %s v%d signed by %q name %q", info.Kind, info.CDiffVersion, info.SignedBy, info.Name)
			}
		})
	}
	t.Run("test-6.freshclam.cld", func(t *testing.T) {
		info, err := Verify(testdata(t, "test-6.freshclam.cld"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if info.Kind != KindCLD || info.Header.Version != 6 || info.SignedBy != SignedByClamAV || len(info.Files) != 20 {
			t.Errorf("got %s v%d signed by %q, %d files", info.Kind, info.Header.Version, info.SignedBy, len(info.Files))
		}
	})
}

// certsDirWith writes PEM certificates into a fresh directory.
func certsDirWith(t testing.TB, pems ...[]byte) string {
	dir := t.TempDir()
	for i, p := range pems {
		writeFile(t, dir, fmt.Sprintf("ca-%d.crt", i), p)
	}
	return dir
}

// otherCA makes a self-signed CA that signed nothing.
func otherCA(t testing.TB) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Some Other Root CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestVerifyRealSignFiles(t *testing.T) {
	var files []string
	for v := 1; v <= 6; v++ {
		files = append(files, fmt.Sprintf("test-%d.cvd", v))
		if v > 1 {
			files = append(files, fmt.Sprintf("test-%d.cdiff", v))
		}
	}
	testCA := readFile(t, testdata(t, "clamav-test-ca.crt"))
	trusted, err := LoadSignRoots(certsDirWith(t, testCA))
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := LoadSignRoots(certsDirWith(t, otherCA(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			p := testdata(t, name)
			info, err := Verify(p, &Trust{SignRoots: trusted})
			if err != nil {
				t.Fatalf("with the test CA: %v", err)
			}
			if info.Sign != SignVerified {
				t.Errorf("with the test CA: sign status %q", info.Sign)
			}
			_, err = Verify(p, &Trust{SignRoots: untrusted})
			wantCheck(t, err, CheckSign)
			info, err = Verify(p, &Trust{})
			if err != nil || info.Sign != SignUnchecked {
				t.Errorf("without certs: %v, sign status %v", err, info)
			}
		})
	}
	// The freshclam CLD has no .sign beside it.
	cld := testdata(t, "test-6.freshclam.cld")
	info, err := Verify(cld, &Trust{SignRoots: trusted})
	if err != nil || info.Sign != SignAbsent {
		t.Errorf("CLD without .sign: %v, %v", err, info)
	}
	_, err = Verify(cld, &Trust{SignRoots: trusted, RequireSign: true})
	wantCheck(t, err, CheckSign)
}

func TestSignFileTampered(t *testing.T) {
	dir := t.TempDir()
	roots, err := LoadSignRoots(certsDirWith(t, readFile(t, testdata(t, "clamav-test-ca.crt"))))
	if err != nil {
		t.Fatal(err)
	}
	cvd := writeFile(t, dir, "test-6.cvd", readFile(t, testdata(t, "test-6.cvd")))
	sign := readFile(t, testdata(t, "test-6.cvd.sign"))
	for name, b := range map[string][]byte{
		"other file's .sign": readFile(t, testdata(t, "test-5.cvd.sign")),
		"bad first line":     append([]byte("#clamsign-2.0"), sign[len("#clamsign-1.0"):]...),
		"empty":              nil,
		"no signature lines": []byte("#clamsign-1.0\n"),
	} {
		t.Run(name, func(t *testing.T) {
			writeFile(t, dir, "test-6.cvd.sign", b)
			_, err := Verify(cvd, &Trust{SignRoots: roots})
			wantCheck(t, err, CheckSign)
		})
	}
	writeFile(t, dir, "test-6.cvd.sign", sign)
	if _, err := Verify(cvd, &Trust{SignRoots: roots}); err != nil {
		t.Fatalf("the untouched copy: %v", err)
	}
}

func TestLoadSignRootsErrors(t *testing.T) {
	if _, err := LoadSignRoots(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing dir accepted")
	}
	dir := t.TempDir()
	writeFile(t, dir, "README", []byte("no certificates here"))
	if _, err := LoadSignRoots(dir); err == nil {
		t.Error("dir without certificates accepted")
	}
}

func TestInspectReal(t *testing.T) {
	info, err := Inspect(testdata(t, "test-6.cvd"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindCVD || len(info.Files) != 20 || info.Header.Sigs != 14 {
		t.Errorf("got %s with %d files, %d sigs", info.Kind, len(info.Files), info.Header.Sigs)
	}
	info, err = Inspect(testdata(t, "test-3.cdiff"), Limits{})
	if err != nil || info.CDiffVersion != 3 {
		t.Errorf("cdiff: %v %v", err, info)
	}
}

// TestSignBesideUnversionedName: ClamAV 1.5 mirrors serve daily.cvd's
// signature as daily-VERSION.cvd.sign, and freshclam 1.5 leaves it under that
// name beside daily.cvd; Verify and FindSign find it there (the version from
// the header), FILE.sign first when both exist.
func TestSignBesideUnversionedName(t *testing.T) {
	roots, err := LoadSignRoots(certsDirWith(t, readFile(t, testdata(t, "clamav-test-ca.crt"))))
	if err != nil {
		t.Fatal(err)
	}
	sign6, sign5 := readFile(t, testdata(t, "test-6.cvd.sign")), readFile(t, testdata(t, "test-5.cvd.sign"))
	for _, c := range []struct {
		name    string
		side    map[string][]byte // files beside test.cvd (a copy of test-6.cvd)
		require bool
		status  string // "" = want a sign check failure
		file    string // the .sign that verified (or FindSign returns)
	}{
		{"DB-VERSION.cvd.sign", map[string][]byte{"test-6.cvd.sign": sign6}, true, SignVerified, "test-6.cvd.sign"},
		{"FILE.sign", map[string][]byte{"test.cvd.sign": sign6}, true, SignVerified, "test.cvd.sign"},
		{"FILE.sign first", map[string][]byte{"test.cvd.sign": sign6, "test-6.cvd.sign": sign5}, true, SignVerified, "test.cvd.sign"},
		{"FILE.sign first, and it fails", map[string][]byte{"test.cvd.sign": sign5, "test-6.cvd.sign": sign6}, false, "", "test.cvd.sign"},
		{"another version's name is not looked at", map[string][]byte{"test-5.cvd.sign": sign5}, false, SignAbsent, ""},
		{"another version's name, required", map[string][]byte{"test-5.cvd.sign": sign5}, true, "", ""},
		{"wrong file under the right name", map[string][]byte{"test-6.cvd.sign": sign5}, false, "", "test-6.cvd.sign"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db := writeFile(t, dir, "test.cvd", readFile(t, testdata(t, "test-6.cvd")))
			for n, b := range c.side {
				writeFile(t, dir, n, b)
			}
			want := ""
			if c.file != "" {
				want = filepath.Join(dir, c.file)
			}
			if got := FindSign(db); got != want {
				t.Errorf("FindSign = %q, want %q", got, want)
			}
			info, err := Verify(db, &Trust{SignRoots: roots, RequireSign: c.require})
			if c.status == "" {
				wantCheck(t, err, CheckSign)
				if c.require && c.file == "" && (err == nil || !strings.Contains(err.Error(), "test.cvd.sign or test-6.cvd.sign is missing")) {
					t.Errorf("required and missing: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Sign != c.status || info.SignFile != want {
				t.Errorf("sign %q from %q, want %q from %q", info.Sign, info.SignFile, c.status, want)
			}
		})
	}
	// A name with the version in it already, and a cdiff: FILE.sign only.
	if got := signNames("/d/daily-27480.cvd", 27480); len(got) != 1 {
		t.Errorf("signNames(daily-27480.cvd) = %q", got)
	}
	if got := signNames("/d/daily-3.cdiff", 0); len(got) != 1 {
		t.Errorf("signNames(daily-3.cdiff) = %q", got)
	}
	if got := signNames("/d/main.cld", 62); len(got) != 2 || got[1] != "/d/main-62.cld.sign" {
		t.Errorf("signNames(main.cld) = %q", got)
	}
	if got := FindSign(filepath.Join(t.TempDir(), "missing.cvd")); got != "" {
		t.Errorf("FindSign of a missing file = %q", got)
	}
}
