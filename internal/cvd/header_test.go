package cvd

import (
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestParseHeader(t *testing.T) {
	good := "ClamAV-VDB:22 Jun 2021 21-34 -0400:6:14:81:3e249e00076b0b15bb54ced37be880c7:abc+/Z09:micasnyd:1624412045"
	pad := func(s string) []byte { b, _ := encodeHeader(s); return b }
	h, err := ParseHeader(pad(good))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Magic: "ClamAV-VDB", BuildTime: "22 Jun 2021 21-34 -0400", Version: 6, Sigs: 14, FLevel: 81,
		MD5: "3e249e00076b0b15bb54ced37be880c7", DSig: "abc+/Z09", Builder: "micasnyd", Time: time.Unix(1624412045, 0).UTC()}
	if h != want {
		t.Errorf("got %+v", h)
	}
	if h.line(h.MD5, h.DSig) != good {
		t.Errorf("line() = %q", h.line(h.MD5, h.DSig))
	}
	bad := map[string]string{
		"magic":         strings.Replace(good, "ClamAV-VDB", "ClamAV-VDX", 1),
		"8 fields":      strings.TrimSuffix(good, ":1624412045"),
		"10 fields":     good + ":x",
		"version sign":  strings.Replace(good, ":6:", ":+6:", 1),
		"version space": strings.Replace(good, ":6:", ": 6:", 1),
		"version big":   strings.Replace(good, ":6:", ":4294967296:", 1),
		"md5 upper":     strings.Replace(good, "3e249e", "3E249E", 1),
		"md5 short":     strings.Replace(good, "3e249e", "3e24", 1),
		"dsig alphabet": strings.Replace(good, "abc+/Z09", "abc-Z09", 1),
		"dsig no md5":   strings.Replace(good, "3e249e00076b0b15bb54ced37be880c7", "X", 1),
		"empty builder": strings.Replace(good, ":micasnyd:", "::", 1),
		"stime":         strings.Replace(good, ":1624412045", ":16244x", 1),
		"time format":   strings.Replace(good, "22 Jun 2021 21-34 -0400", "2021-06-22", 1),
	}
	for name, s := range bad {
		if _, err := ParseHeader(pad(s)); err == nil {
			t.Errorf("%s: accepted %q", name, s)
		}
	}
	if _, err := ParseHeader(pad(good)[:511]); err == nil {
		t.Error("511 bytes accepted")
	}
	nl := pad(good)
	nl[511] = '\n'
	if _, err := ParseHeader(nl); err == nil {
		t.Error("newline in the padding accepted")
	}
	if _, err := encodeHeader(strings.Repeat("x", 513)); err == nil {
		t.Error("513-byte header encoded")
	}
}

func TestParseCDiffHeader(t *testing.T) {
	h, err := parseCDiffHeader([]byte("ClamAV-Diff:27001:4567:\x1f\x8b"))
	if err != nil || h.Version != 27001 || h.ScriptLen != 4567 || h.Size != len("ClamAV-Diff:27001:4567:") {
		t.Fatalf("%+v %v", h, err)
	}
	for _, s := range []string{"ClamAV-Diff:0:5:", "ClamAV-Diff:1:", "ClamAV-Diff:x:5:", "ClamAV-Diff:1:-5:", "ClamAV-Diff:12345678901:5:", "ClamAV-VDB:1:5:"} {
		if _, err := parseCDiffHeader([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestClamSigEncoding(t *testing.T) {
	for _, v := range []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(63), big.NewInt(64), new(big.Int).Lsh(big.NewInt(12345), 2000)} {
		s := encodeClamSig(v, 2048)
		if len(s) != 342 {
			t.Errorf("len %d", len(s))
		}
		got, err := decodeClamSig(s)
		if err != nil || got.Cmp(v) != 0 {
			t.Errorf("%v -> %q -> %v %v", v, s[:8], got, err)
		}
	}
	// Least significant digit first: "ba" is 1 + 0*64.
	if v, _ := decodeClamSig("ba"); v.Int64() != 1 {
		t.Errorf("decode(ba) = %v", v)
	}
	if v, _ := decodeClamSig("ab"); v.Int64() != 64 {
		t.Errorf("decode(ab) = %v", v)
	}
	for _, s := range []string{"", "a-b", "a b", strings.Repeat("a", maxSigChars+1)} {
		if _, err := decodeClamSig(s); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
}

func TestLegacyAndPSSSignatures(t *testing.T) {
	org, evil := testKeys(t)
	sum := []byte("0123456789abcdef")
	sig := signLegacy(org, sum)
	if !verifyLegacy(&org.PublicKey, sum, sig) {
		t.Fatal("own legacy signature does not verify")
	}
	if verifyLegacy(&evil.PublicKey, sum, sig) || verifyLegacy(&org.PublicKey, []byte("0123456789abcdeF"), sig) {
		t.Error("legacy signature verifies with the wrong key or digest")
	}
	// A signature value at or above the modulus is never valid.
	if verifyLegacy(&org.PublicKey, sum, encodeClamSig(org.N, 2048)) {
		t.Error("s = N accepted")
	}
	d := make([]byte, 32)
	ps, err := signPSS(org, d)
	if err != nil {
		t.Fatal(err)
	}
	if !verifyPSS(&org.PublicKey, d, ps) || verifyPSS(&evil.PublicKey, d, ps) {
		t.Error("PSS signature check wrong")
	}
	if verifyPSS(officialInfoKey, d, ps) || verifyLegacy(officialLegacyKey, sum, sig) {
		t.Error("own signature verifies with ClamAV's key")
	}
}
