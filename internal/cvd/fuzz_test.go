package cvd

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/testutil"
)

// Fuzz targets for every parser of bytes from disk or network. Seed corpora
// live in testdata/fuzz/FuzzX/ (regenerate the synthetic ones with
// AVFLEET_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds); the real
// ClamAV test files are added at run time when present.

// realFiles returns the real test databases if they are present, without
// skipping: fuzzing works without them.
func realFiles(names ...string) [][]byte {
	dir := os.Getenv("AVFLEET_CLAMAV_TESTDATA")
	if dir == "" {
		dir = filepath.Join(testutil.RepoRoot(), "..", "shared", "testdata", "clamav")
	}
	var out [][]byte
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			out = append(out, b)
		}
	}
	return out
}

func FuzzParseHeader(f *testing.F) {
	for _, b := range realFiles("test-1.cvd", "test-6.cvd", "test-6.freshclam.cld") {
		f.Add(b[:HeaderSize])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Shape the input like a header so the fuzzer spends its time on
		// the fields rather than on the length check.
		hb := bytes.Repeat([]byte{' '}, HeaderSize)
		copy(hb, b)
		v := headerVersion(hb) // FindSign's lenient read must never panic
		h, err := ParseHeader(hb)
		if err != nil {
			return
		}
		if v != h.Version {
			t.Fatalf("headerVersion %d, ParseHeader %d", v, h.Version)
		}
		// What parses must print back to something that parses the same.
		line := h.line(h.MD5, h.DSig)
		h2, err := parseHeaderLine(line)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", line, err)
		}
		if h2 != h {
			t.Fatalf("round trip changed the header:\n%+v\n%+v", h, h2)
		}
		if h.MD5 != "X" && !isLowerHex(h.MD5, 32) {
			t.Fatalf("accepted MD5 %q", h.MD5)
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	for _, db := range realFiles("test-6.cvd", "test-2.cvd") {
		if inf := infoOf(db); inf != nil {
			f.Add(inf)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		inf, err := parseInfo(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, fl := range inf.Files {
			if !isPlainName(fl.Name) || fl.Size < 0 || !isLowerHex(fl.SHA256, 64) || seen[fl.Name] {
				t.Fatalf("accepted file line %+v", fl)
			}
			seen[fl.Name] = true
		}
		if inf.HasDSig {
			if !bytes.HasPrefix(b, inf.Signed) || !bytes.HasPrefix(b[len(inf.Signed):], []byte("DSIG:")) {
				t.Fatal("signed part is not the bytes before DSIG:")
			}
		}
		// Re-encoding the parsed content parses to the same list.
		enc, err := encodeInfo(inf.Header, inf.Files, nil)
		if err != nil {
			t.Fatal(err)
		}
		inf2, err := parseInfo(enc)
		if err != nil || len(inf2.Files) != len(inf.Files) {
			t.Fatalf("re-encoded .info does not parse: %v", err)
		}
	})
}

// infoOf extracts the .info of a real CVD for seeding.
func infoOf(db []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(db[HeaderSize:]))
	if err != nil {
		return nil
	}
	tr := newTarReader(zr, Limits{})
	for {
		h, err := tr.Next()
		if err != nil {
			return nil
		}
		if strings.HasSuffix(h.Name, ".info") {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}

func FuzzTarReader(f *testing.F) {
	for _, db := range realFiles("test-2.cvd", "test-6.freshclam.cld") {
		f.Add(db[HeaderSize:])
	}
	lim := Limits{MaxFiles: 64, MaxFileBytes: 1 << 20, MaxBytes: 8 << 20, MaxRatio: 100}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The tar reader alone on the raw bytes...
		tr := newTarReader(bytes.NewReader(b), lim)
		var total int64
		for n := 0; ; n++ {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if !isPlainName(h.Name) || h.Size < 0 || h.Size > lim.MaxFileBytes || n >= lim.MaxFiles {
				t.Fatalf("accepted entry %+v (#%d)", h, n)
			}
			k, err := io.Copy(io.Discard, tr)
			total += k
			if err != nil {
				break
			}
			if k != h.Size {
				t.Fatalf("entry %s: read %d of %d bytes without error", h.Name, k, h.Size)
			}
		}
		if total > int64(len(b)) {
			t.Fatalf("read %d content bytes from %d input bytes", total, len(b))
		}
		// ...and the whole concurrent pipeline (inflate when it is gzip).
		res := scanBody(bytes.NewReader(b), make([]byte, HeaderSize), lim, nil)
		if res.BodyLen != int64(len(b)) || res.ReadErr != nil {
			t.Fatalf("pipeline read %d of %d bytes: %v", res.BodyLen, len(b), res.ReadErr)
		}
		for _, e := range res.Entries {
			if !isPlainName(e.Name) {
				t.Fatalf("pipeline accepted entry %q", e.Name)
			}
		}
	})
}

func FuzzCDiffScript(f *testing.F) {
	for _, c := range realFiles("test-2.cdiff", "test-3.cdiff", "test-6.cdiff") {
		if s := scriptOf(c); s != nil {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 64<<10 {
			return
		}
		// Syntax: every command the parser hands out is well-formed.
		n, err := parseScript(bytes.NewReader(b), func(c *scriptCmd) error {
			switch c.Op {
			case "OPEN", "UNLINK":
				if !isPlainName(c.Name) {
					t.Fatalf("%s of %q accepted", c.Op, c.Name)
				}
			case "MOVE":
				if !isPlainName(c.Name) || !isPlainName(c.Dst) || c.N < 1 || c.N2 < c.N {
					t.Fatalf("MOVE %+v accepted", c)
				}
			case "DEL", "XCHG":
				if c.N < 1 || len(c.Pat) == 0 {
					t.Fatalf("%s %+v accepted", c.Op, c)
				}
			}
			return nil
		})
		if err == nil && n != int64(len(b)) {
			t.Fatalf("parsed %d of %d bytes", n, len(b))
		}
		if err != nil {
			return
		}
		// Semantics: applying it touches nothing outside the database
		// directory and leaves only members there.
		root := t.TempDir()
		db := filepath.Join(root, "db")
		os.Mkdir(db, 0o700)
		members := map[string]string{"x.ndb": "a\nb\nc\n", "x.info": "ClamAV-VDB:x\nx.ndb:6:00\n"}
		var order []string
		for m, c := range members {
			os.WriteFile(filepath.Join(db, m), []byte(c), 0o600)
			order = append(order, m)
		}
		ap := &applier{dir: db, scratch: root, order: order, lim: Limits{MaxFiles: 20}.withDefaults()}
		parseScript(bytes.NewReader(b), ap.apply)
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.Name() != "db" {
				t.Fatalf("left %s beside the database", e.Name())
			}
		}
		ents, _ = os.ReadDir(db)
		if len(ents) != len(ap.order) {
			t.Fatalf("%d files in the database, %d members recorded", len(ents), len(ap.order))
		}
		for _, e := range ents {
			if !isPlainName(e.Name()) || !e.Type().IsRegular() {
				t.Fatalf("member %q (%v)", e.Name(), e.Type())
			}
		}
	})
}

func FuzzSignFile(f *testing.F) {
	for _, b := range realFiles("test-6.cvd.sign", "test-2.cdiff.sign") {
		f.Add(b)
	}
	roots := x509.NewCertPool()
	for _, b := range realFiles("clamav-test-ca.crt") {
		roots.AppendCertsFromPEM(b)
	}
	digest := make([]byte, 32)
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parseSignFile(b)
		if err != nil {
			return
		}
		for _, l := range lines {
			if l.MaxFL != 0 && l.MaxFL < l.MinFL {
				t.Fatalf("accepted range %d..%d", l.MinFL, l.MaxFL)
			}
		}
		// The PKCS#7 parser and verifier must refuse garbage without
		// panicking (the file path is never opened for SHA-256).
		if err := verifySign(b, "/nonexistent", digest, roots); err == nil {
			t.Fatal("a signature over an all-zero digest verified")
		}
	})
}

// scriptOf inflates the script of a real cdiff for seeding.
func scriptOf(c []byte) []byte {
	h, err := parseCDiffHeader(c)
	if err != nil {
		return nil
	}
	end := bytes.LastIndexByte(c, ':')
	if end < h.Size {
		return nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(c[h.Size:end]))
	if err != nil {
		return nil
	}
	b, _ := io.ReadAll(zr)
	return b
}

// syntheticSeeds are the committed seed corpora: small inputs reaching each
// branch of the parsers, made here rather than copied from anywhere.
func syntheticSeeds(t testing.TB) map[string]map[string][]byte {
	h := testHeader(7, 2)
	hb, _ := encodeHeader(h.line(strings.Repeat("0", 32), "X"))
	cld, _ := encodeHeader(h.line("X", "X"))
	info, _ := encodeInfo(h, []File{fileOf("a.hdb", []byte("x\n")), fileOf("b.ndb", nil)}, func([]byte) (string, error) { return "abc+/Z09", nil })
	tarBody := rawTar([]rawEntry{copying, entry("acme.info", info), sampleHDB}, true)
	sum := sha256.Sum256(nil)
	return map[string]map[string][]byte{
		"FuzzParseHeader": {
			"cvd":       hb,
			"cld":       cld,
			"nul":       append(bytes.Clone(hb[:100]), make([]byte, 412)...),
			"8fields":   []byte("ClamAV-VDB:08 Mar 2024 09-21 +0000:7:2:90:X:X:tester"),
			"bigsig":    []byte(h.line(strings.Repeat("f", 32), strings.Repeat("z", 400))),
			"signonly":  []byte(h.line("X", "abc")),
			"negative":  []byte("ClamAV-VDB:08 Mar 2024 09-21 +0000:-7:2:90:X:X:tester:1"),
			"overflow":  []byte("ClamAV-VDB:08 Mar 2024 09-21 +0000:99999999999:2:90:X:X:tester:1"),
			"badtime":   []byte("ClamAV-VDB:yesterday:7:2:90:X:X:tester:1"),
			"cdiffhead": []byte("ClamAV-Diff:7:100:"),
		},
		"FuzzParseInfo": {
			"signed":    info,
			"unsigned":  []byte(h.line("X", "X") + "\na.hdb:2:" + hex.EncodeToString(sum[:]) + "\n"),
			"traversal": []byte(h.line("X", "X") + "\n../a:2:" + hex.EncodeToString(sum[:]) + "\n"),
			"trailing":  append(bytes.Clone(info), "more\n"...),
			"empty":     {},
			"noheader":  []byte("a.hdb:2:00\n"),
			"longline":  []byte(h.line("X", "X") + "\n" + strings.Repeat("a", 2000) + "\n"),
			"crlf":      []byte(h.line("X", "X") + "\r\nDSIG:abc\r\n"),
		},
		"FuzzTarReader": {
			"plain":     tarBody,
			"gzip":      gz(tarBody),
			"noend":     rawTar([]rawEntry{sampleHDB}, false),
			"symlink":   rawTar([]rawEntry{{name: "a", typ: '2', link: "/etc/passwd", size: -1}}, false),
			"traversal": rawTar([]rawEntry{entry("../a", []byte("x"))}, false),
			"bigsize":   rawTar([]rawEntry{{name: "a.hdb", size: 1 << 40}}, false),
			"truncated": tarBody[:700],
			"trailer":   append(bytes.Clone(tarBody), 1, 2, 3),
			"gztrunc":   gz(tarBody)[:60],
			"pax":       rawTar([]rawEntry{{name: "p", typ: 'x', data: []byte("9 path=x\n"), size: -1}}, false),
		},
		"FuzzSignFile": {
			"header":  []byte("#clamsign-1.0\n"),
			"garbage": []byte("#clamsign-1.0\n230::pkcs7-pem:MIIBAAYJKoZIhvcNAQcCoA==\n"),
			"range":   []byte("#clamsign-1.0\n# comment\n\n90:80:pkcs7-pem:AAAA\n"),
			"type":    []byte("#clamsign-1.0\n1::x509:AAAA\n"),
			"version": []byte("#clamsign-2.0\n1::pkcs7-pem:AAAA\n"),
		},
		"FuzzCDiffScript": {
			"all": []byte("# comment\nOPEN x.ndb\nADD new line\nDEL 1 a\nXCHG 2 b B\nCLOSE\n" +
				"MOVE x.ndb x.info 1 c 1 c\nOPEN y.hdb\nADD h:1:N\nCLOSE\nUNLINK y.hdb\n"),
			"traversal": []byte("OPEN ../x\nADD y\nCLOSE\n"),
			"unclosed":  []byte("OPEN x.ndb\nADD y\n"),
			"unknown":   []byte("OPEN x.ndb\nEXEC y\nCLOSE\n"),
			"nonl":      []byte("OPEN x.ndb\nXCHG 3 c C\nCLOSE"),
			"dupedit":   []byte("OPEN x.ndb\nDEL 1 a\nDEL 1 a\nCLOSE\n"),
			"bignum":    []byte("OPEN x.ndb\nDEL 999999999 a\nCLOSE\n"),
			"emptyline": []byte("OPEN x.ndb\n\nCLOSE\n"),
		},
	}
}

// TestWriteFuzzSeeds writes the synthetic seeds into testdata/fuzz; it runs
// only when asked, and otherwise checks the committed seeds still parse as
// corpus files.
func TestWriteFuzzSeeds(t *testing.T) {
	seeds := syntheticSeeds(t)
	write := os.Getenv("AVFLEET_WRITE_FUZZ_SEEDS") != ""
	for target, files := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, b := range files {
			p := filepath.Join(dir, "seed-"+name)
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
			if write {
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("seed %s missing (AVFLEET_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds): %v", p, err)
				continue
			}
			if !strings.HasPrefix(string(got), "go test fuzz v1\n") {
				t.Errorf("seed %s is not a corpus file", p)
			}
		}
	}
}
