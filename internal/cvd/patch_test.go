package cvd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/testutil"
)

func cdiffChain(t *testing.T, from, to int) []string {
	var out []string
	for v := from; v <= to; v++ {
		out = append(out, testdata(t, fmt.Sprintf("test-%d.cdiff", v)))
	}
	return out
}

// sameMembers compares the member lists (name, size, SHA-256) of two
// databases, ignoring order.
func sameMembers(t *testing.T, got, want *Info) {
	t.Helper()
	key := func(f File) string { return fmt.Sprintf("%s:%d:%s", f.Name, f.Size, f.SHA256) }
	var g, w []string
	for _, f := range got.Files {
		g = append(g, key(f))
	}
	for _, f := range want.Files {
		w = append(w, key(f))
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("members differ:\n got %v\nwant %v", g, w)
	}
}

func TestPatchRealChainLoadsInClamscan(t *testing.T) {
	dbdir := t.TempDir()
	out := filepath.Join(dbdir, "test.cld")
	info, err := Patch(testdata(t, "test-1.cvd"), cdiffChain(t, 2, 6), out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindCLD || info.Header.Version != 6 || info.SignedBy != SignedByClamAV || info.Path != out {
		t.Errorf("got %s v%d signed by %q at %s", info.Kind, info.Header.Version, info.SignedBy, info.Path)
	}
	want, err := Verify(testdata(t, "test-6.cvd"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sameMembers(t, info, want)

	// It looks like freshclam's: the same header, then a plain tar
	// starting with COPYING.
	got := readFile(t, out)
	fc := readFile(t, testdata(t, "test-6.freshclam.cld"))
	if !bytes.Equal(got[:HeaderSize], fc[:HeaderSize]) {
		t.Errorf("header differs from freshclam's:\n got %q\nwant %q", got[:80], fc[:80])
	}
	if !bytes.HasPrefix(got[HeaderSize:], []byte("COPYING\x00")) {
		t.Errorf("body does not start with COPYING: %q", got[HeaderSize:HeaderSize+16])
	}
	if ents, _ := os.ReadDir(dbdir); len(ents) != 1 {
		t.Errorf("left behind in the output dir: %v", ents)
	}

	// Stock clamscan loads it and detects what test-6 detects.
	testfile := "/usr/share/clamav-testfiles/clam.exe"
	testutil.NeedFile(t, testfile)
	eicarPath := writeFile(t, t.TempDir(), "eicar.com", eicar)
	res := clamscan(t, dbdir, eicarPath, testfile)
	for _, w := range []string{eicarPath + ": Eicar-Test-Signature FOUND", testfile + ": Clamav.Test.File-6 FOUND"} {
		if !strings.Contains(res, w) {
			t.Errorf("clamscan output lacks %q:\n%s", w, res)
		}
	}
}

func TestPatchPartialChains(t *testing.T) {
	for _, c := range []struct{ base, from, to int }{{1, 2, 2}, {3, 4, 6}, {5, 6, 6}} {
		t.Run(fmt.Sprintf("%d+%d..%d", c.base, c.from, c.to), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "test.cld")
			info, err := Patch(testdata(t, fmt.Sprintf("test-%d.cvd", c.base)), cdiffChain(t, c.from, c.to), out, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Verify(testdata(t, fmt.Sprintf("test-%d.cvd", c.to)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if info.Header.Version != uint(c.to) {
				t.Errorf("version %d, want %d", info.Header.Version, c.to)
			}
			sameMembers(t, info, want)
		})
	}
}

func TestPatchFromCLD(t *testing.T) {
	dir := t.TempDir()
	mid := filepath.Join(dir, "mid.cld")
	if _, err := Patch(testdata(t, "test-1.cvd"), cdiffChain(t, 2, 3), mid, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "test.cld")
	info, err := Patch(mid, cdiffChain(t, 4, 6), out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Header.Version != 6 {
		t.Errorf("version %d", info.Header.Version)
	}
	// Nothing to apply is a valid (if pointless) chain: a CVD becomes a CLD.
	info, err = Patch(testdata(t, "test-6.cvd"), nil, filepath.Join(dir, "six.cld"), nil)
	if err != nil || info.Kind != KindCLD {
		t.Fatalf("empty chain: %v %v", err, info)
	}
}

func TestPatchRefusals(t *testing.T) {
	org, _ := testKeys(t)
	dir := t.TempDir()
	// A cdiff that is properly signed (by the org key) but for a database
	// that is not there, or one whose patterns do not match.
	noMatch := writeFile(t, dir, "test-2.cdiff", makeCDiff(t, 2, "OPEN test.info\nXCHG 1 Not-The-Header X\nCLOSE\n", org))
	cases := []struct {
		name   string
		base   string
		cdiffs []string
		trust  *Trust
		want   Check
	}{
		{"skips a version", testdata(t, "test-1.cvd"), cdiffChain(t, 3, 3), nil, CheckVersion},
		{"same cdiff twice", testdata(t, "test-1.cvd"), append(cdiffChain(t, 2, 2), cdiffChain(t, 2, 2)...), nil, CheckVersion},
		{"older than base", testdata(t, "test-4.cvd"), cdiffChain(t, 3, 3), nil, CheckVersion},
		{"cdiff as base", testdata(t, "test-2.cdiff"), cdiffChain(t, 3, 3), nil, CheckFormat},
		{"database as cdiff", testdata(t, "test-1.cvd"), []string{testdata(t, "test-2.cvd")}, nil, CheckFormat},
		{"pattern does not match", testdata(t, "test-1.cvd"), []string{noMatch}, orgTrust(t), CheckCDiff},
		{"untrusted cdiff signer", testdata(t, "test-1.cvd"), []string{noMatch}, nil, CheckCDiff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "test.cld")
			_, err := Patch(c.base, c.cdiffs, out, c.trust)
			wantCheck(t, err, c.want)
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

// applyScript runs a script on members in a fresh directory and returns the
// members afterwards.
func applyScript(t *testing.T, members map[string]string, script string) (map[string]string, error) {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	var order []string
	for n, c := range members {
		writeFile(t, db, n, []byte(c))
		order = append(order, n)
	}
	ap := &applier{dir: db, scratch: dir, order: order, lim: Limits{}.withDefaults()}
	if _, err := parseScript(strings.NewReader(script), ap.apply); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range ap.order {
		out[n] = string(readFile(t, filepath.Join(db, n)))
	}
	if ents, _ := os.ReadDir(db); len(ents) != len(ap.order) {
		t.Errorf("directory holds %d files, order lists %d", len(ents), len(ap.order))
	}
	return out, nil
}

func TestScriptSemantics(t *testing.T) {
	base := map[string]string{"a.ndb": "one\ntwo\nthree\nfour\n", "b.ndb": "x\n"}
	cases := []struct {
		name   string
		script string
		want   map[string]string // nil: want an error
	}{
		{"add", "OPEN a.ndb\nADD five\nADD six 6\nCLOSE\n",
			map[string]string{"a.ndb": "one\ntwo\nthree\nfour\nfive\nsix 6\n", "b.ndb": "x\n"}},
		{"del and xchg by original line numbers", "OPEN a.ndb\nDEL 1 on\nXCHG 3 thr THREE 3\nDEL 4 four\nCLOSE\n",
			map[string]string{"a.ndb": "two\nTHREE 3\n", "b.ndb": "x\n"}},
		{"edits then additions", "OPEN a.ndb\nADD five\nDEL 2 two\nCLOSE\n",
			map[string]string{"a.ndb": "one\nthree\nfour\nfive\n", "b.ndb": "x\n"}},
		{"create by add", "OPEN c.hdb\nADD h:1:N\nCLOSE\n",
			map[string]string{"a.ndb": "one\ntwo\nthree\nfour\n", "b.ndb": "x\n", "c.hdb": "h:1:N\n"}},
		{"move", "MOVE a.ndb b.ndb 2 two 3 three\n",
			map[string]string{"a.ndb": "one\nfour\n", "b.ndb": "x\ntwo\nthree\n"}},
		{"unlink", "UNLINK b.ndb\n", map[string]string{"a.ndb": "one\ntwo\nthree\nfour\n"}},
		{"comments", "# resize 1024\nOPEN b.ndb\n# another\nADD y\nCLOSE\n",
			map[string]string{"a.ndb": "one\ntwo\nthree\nfour\n", "b.ndb": "x\ny\n"}},
		{"last line without newline", "OPEN b.ndb\nADD y\nCLOSE",
			map[string]string{"a.ndb": "one\ntwo\nthree\nfour\n", "b.ndb": "x\ny\n"}},
		{"pattern mismatch", "OPEN a.ndb\nDEL 1 two\nCLOSE\n", nil},
		{"edit past the end", "OPEN a.ndb\nDEL 9 x\nCLOSE\n", nil},
		{"edit of a missing member", "OPEN z.ndb\nDEL 1 x\nCLOSE\n", nil},
		{"two edits of one line", "OPEN a.ndb\nDEL 1 one\nXCHG 1 one 1\nCLOSE\n", nil},
		{"move past the end", "MOVE a.ndb b.ndb 3 three 9 x\n", nil},
		{"move to a missing member", "MOVE a.ndb z.ndb 1 one 1 one\n", nil},
		{"unlink missing", "UNLINK z.ndb\n", nil},
		{"unclosed", "OPEN a.ndb\nADD x\n", nil},
		{"nested open", "OPEN a.ndb\nOPEN b.ndb\nCLOSE\nCLOSE\n", nil},
		{"add without open", "ADD x\n", nil},
		{"close without open", "CLOSE\n", nil},
		{"move while open", "OPEN a.ndb\nMOVE a.ndb b.ndb 1 one 1 one\nCLOSE\n", nil},
		{"unknown command", "OPEN a.ndb\nAPPEND x\nCLOSE\n", nil},
		{"empty line", "OPEN a.ndb\n\nCLOSE\n", nil},
		{"open ../x", "OPEN ../x\nADD y\nCLOSE\n", nil},
		{"open /etc/passwd", "OPEN /etc/passwd\nADD y\nCLOSE\n", nil},
		{"open a/b", "OPEN a/b\nADD y\nCLOSE\n", nil},
		{"unlink ..", "UNLINK ..\n", nil},
		{"move to ../x", "MOVE a.ndb ../x 1 one 1 one\n", nil},
		{"hidden name", "OPEN .bashrc\nADD y\nCLOSE\n", nil},
		{"NUL byte", "OPEN a.ndb\nADD x\x00y\nCLOSE\n", nil},
		{"line number zero", "OPEN a.ndb\nDEL 0 x\nCLOSE\n", nil},
		{"line number not a number", "OPEN a.ndb\nDEL one x\nCLOSE\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := applyScript(t, base, c.script)
			if c.want == nil {
				if err == nil {
					t.Fatalf("accepted, got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestPatchRequireSign(t *testing.T) {
	roots, err := LoadSignRoots(certsDirWith(t, readFile(t, testdata(t, "clamav-test-ca.crt"))))
	if err != nil {
		t.Fatal(err)
	}
	tr := &Trust{SignRoots: roots, RequireSign: true}
	dir := t.TempDir()
	// Real CVD and cdiffs, all with their .sign: fine.
	mid := filepath.Join(dir, "mid.cld")
	if _, err := Patch(testdata(t, "test-1.cvd"), cdiffChain(t, 2, 3), mid, tr); err != nil {
		t.Fatal(err)
	}
	// A CLD base has no .sign, and needs none.
	info, err := Patch(mid, cdiffChain(t, 4, 6), filepath.Join(dir, "test.cld"), tr)
	if err != nil {
		t.Fatal(err)
	}
	if info.Sign != SignAbsent {
		t.Errorf("sign status %q", info.Sign)
	}
	// A CVD base without its .sign is refused.
	cvd := writeFile(t, dir, "test-1.cvd", readFile(t, testdata(t, "test-1.cvd")))
	_, err = Patch(cvd, cdiffChain(t, 2, 2), filepath.Join(dir, "x.cld"), tr)
	wantCheck(t, err, CheckSign)
	// So is a cdiff without its .sign.
	cd := writeFile(t, dir, "test-2.cdiff", readFile(t, testdata(t, "test-2.cdiff")))
	_, err = Patch(testdata(t, "test-1.cvd"), []string{cd}, filepath.Join(dir, "y.cld"), tr)
	wantCheck(t, err, CheckSign)
}
