package cvd

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/testutil"
)

// sigFiles writes the organisation's signature files: EICAR by MD5 and
// ClamAV's own clamav.hdb (clam.exe by SHA-256).
func sigFiles(t *testing.T, dir string) []string {
	return []string{
		writeFile(t, dir, sampleHDB.name, sampleHDB.data),
		writeFile(t, dir, "clamav.hdb", readFile(t, testdata(t, "clamav.hdb"))),
		writeFile(t, dir, sampleNDB.name, sampleNDB.data),
	}
}

func buildTo(t *testing.T, path string, o BuildOptions) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Build(f, o); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBuildSignedVerifiesOnlyWithItsKey(t *testing.T) {
	org, evil := testKeys(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "acme.cvd")
	buildTo(t, out, BuildOptions{Name: "acme", Version: 3, Key: org, Time: testBuildTime, Files: sigFiles(t, dir)})

	info, err := Verify(out, &Trust{Keys: []*rsa.PublicKey{&evil.PublicKey, &org.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindCVD || info.Name != "acme" || info.Header.Version != 3 || info.Header.Sigs != 3 ||
		info.Header.FLevel != DefaultFLevel || info.Header.Builder != DefaultBuilder ||
		info.SignedBy != "key:"+Fingerprint(&org.PublicKey) || !info.Header.Time.Equal(testBuildTime) {
		t.Errorf("got %+v", info)
	}
	names := []string{}
	for _, f := range info.Files {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "acme.info acme.hdb clamav.hdb acme.ndb" {
		t.Errorf("members %v", names)
	}
	_, err = Verify(out, nil)
	wantCheck(t, err, CheckSignature)
	_, err = Verify(out, &Trust{Keys: []*rsa.PublicKey{&evil.PublicKey}})
	wantCheck(t, err, CheckSignature)
	_, err = Verify(out, &Trust{AllowUnsigned: true})
	wantCheck(t, err, CheckSignature)
}

func TestBuildToPipe(t *testing.T) {
	org, _ := testKeys(t)
	dir := t.TempDir()
	var buf bytes.Buffer // not seekable: Build goes through a temp file
	if err := Build(&buf, BuildOptions{Name: "acme", Version: 1, Key: org, Files: sigFiles(t, dir)}); err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, dir, "acme.cvd", buf.Bytes())
	if _, err := Verify(p, orgTrust(t)); err != nil {
		t.Fatal(err)
	}
}

func TestBuildRefusals(t *testing.T) {
	dir := t.TempDir()
	files := sigFiles(t, dir)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]BuildOptions{
		"no name":          {Version: 1, Files: files},
		"name with dot":    {Name: "a.b", Version: 1, Files: files},
		"name with slash":  {Name: "../a", Version: 1, Files: files},
		"version 0":        {Name: "acme", Files: files},
		"no files":         {Name: "acme", Version: 1},
		"missing file":     {Name: "acme", Version: 1, Files: []string{filepath.Join(dir, "nope.hdb")}},
		"duplicate names":  {Name: "acme", Version: 1, Files: []string{files[0], files[0]}},
		"an .info file":    {Name: "acme", Version: 1, Files: []string{writeFile(t, dir, "x.info", []byte("x"))}},
		"odd file name":    {Name: "acme", Version: 1, Files: []string{writeFile(t, dir, "a b.hdb", []byte("x\n"))}},
		"builder colon":    {Name: "acme", Version: 1, Builder: "a:b", Files: files},
		"builder too long": {Name: "acme", Version: 1, Builder: strings.Repeat("b", 65), Files: files},
		"1024-bit key":     {Name: "acme", Version: 1, Key: small, Files: files},
		"directory":        {Name: "acme", Version: 1, Files: []string{dir}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := Build(&bytes.Buffer{}, o); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestBuildCUDLoadsInClamscan(t *testing.T) {
	dir := t.TempDir()
	dbdir := filepath.Join(dir, "db")
	os.Mkdir(dbdir, 0o755)
	out := filepath.Join(dbdir, "acme.cud")
	buildTo(t, out, BuildOptions{Name: "acme", Version: 2, Files: sigFiles(t, dir)})

	_, err := Verify(out, nil)
	wantCheck(t, err, CheckUnsigned)
	info, err := Verify(out, &Trust{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindCUD || info.SignedBy != SignedByUnsigned {
		t.Errorf("got %s signed by %q", info.Kind, info.SignedBy)
	}
	assertDetects(t, dbdir)
}

// assertDetects runs stock clamscan with only dbdir's databases on EICAR,
// clam.exe and a marker file, expecting the organisation's names.
func assertDetects(t *testing.T, dbdir string) {
	t.Helper()
	testfile := "/usr/share/clamav-testfiles/clam.exe"
	testutil.NeedFile(t, testfile)
	files := t.TempDir()
	e := writeFile(t, files, "eicar.com", eicar)
	m := writeFile(t, files, "marker.txt", []byte("...ACME-MARKER-1..."))
	clean := writeFile(t, files, "clean.txt", []byte("nothing to see"))
	out := clamscan(t, dbdir, e, testfile, m, clean)
	for _, w := range []string{
		e + ": Acme.Test.Eicar.UNOFFICIAL FOUND",
		testfile + ": ClamAV-Test-File.UNOFFICIAL FOUND",
		m + ": Acme.Test.Marker.UNOFFICIAL FOUND",
		clean + ": OK",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("clamscan output lacks %q:\n%s", w, out)
		}
	}
}

func TestConvertSignedToCUDLoadsInClamscan(t *testing.T) {
	org, _ := testKeys(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "acme.cvd")
	buildTo(t, src, BuildOptions{Name: "acme", Version: 5, Key: org, Files: sigFiles(t, dir)})
	if _, err := Verify(src, orgTrust(t)); err != nil {
		t.Fatal(err)
	}
	dbdir := filepath.Join(dir, "db")
	os.Mkdir(dbdir, 0o755)
	dst := filepath.Join(dbdir, "acme.cud")
	if err := Convert(src, dst, KindCUD); err != nil {
		t.Fatal(err)
	}
	info, err := Verify(dst, &Trust{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindCUD || info.Header.Version != 5 {
		t.Errorf("got %s v%d", info.Kind, info.Header.Version)
	}
	if ents, _ := os.ReadDir(dbdir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	assertDetects(t, dbdir)
}

func TestConvertOfficialToCLD(t *testing.T) {
	dbdir := t.TempDir()
	dst := filepath.Join(dbdir, "test.cld")
	if err := Convert(testdata(t, "test-6.cvd"), dst, KindCLD); err != nil {
		t.Fatal(err)
	}
	info, err := Verify(dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindCLD || info.SignedBy != SignedByClamAV {
		t.Errorf("got %s signed by %q", info.Kind, info.SignedBy)
	}
	testfile := "/usr/share/clamav-testfiles/clam.exe"
	testutil.NeedFile(t, testfile)
	if out := clamscan(t, dbdir, testfile); !strings.Contains(out, "Clamav.Test.File-6 FOUND") {
		t.Errorf("clamscan: %s", out)
	}
	if err := Convert(testdata(t, "test-6.cvd"), filepath.Join(dbdir, "x.cvd"), KindCVD); err == nil {
		t.Error("convert to cvd accepted")
	}
	if err := Convert(testdata(t, "test-6.cdiff"), filepath.Join(dbdir, "x.cld"), KindCLD); err == nil {
		t.Error("convert of a cdiff accepted")
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "acme")
	key, err := WriteKeyPair(prefix, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(prefix + ".key")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", st, err)
	}
	priv, err := ParsePrivateKeyPEM(readFile(t, prefix+".key"))
	if err != nil || !priv.Equal(key) {
		t.Fatalf("private key: %v", err)
	}
	pub, err := ParsePublicKeyPEM(readFile(t, prefix+".pub.pem"))
	if err != nil || !pub.Equal(&key.PublicKey) {
		t.Fatalf("public key: %v", err)
	}
	if _, err := WriteKeyPair(prefix, false); err == nil {
		t.Error("overwrote an existing key")
	}
	if _, err := ParsePublicKeyPEM(readFile(t, prefix+".key")); err == nil {
		t.Error("private key accepted as public key")
	}
	if _, err := ParsePrivateKeyPEM(readFile(t, prefix+".pub.pem")); err == nil {
		t.Error("public key accepted as private key")
	}
	if len(Fingerprint(pub)) != 64 {
		t.Errorf("fingerprint %q", Fingerprint(pub))
	}
}
