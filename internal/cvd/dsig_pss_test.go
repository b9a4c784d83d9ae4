package cvd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/avfleet/avfleet/internal/testutil"
)

// TestVerifyPSSTopBit: test-5.cvd's .info DSIG has the second bit of its
// encoded message set, which libclamav accepts (emBits = 8k-1) and Go's
// rsa.VerifyPSS alone refuses. A changed DSIG must still fail.
func TestVerifyPSSTopBit(t *testing.T) {
	dir := testutil.ClamAVTestdata(t)
	if _, err := Verify(filepath.Join(dir, "test-5.cvd"), nil); err != nil {
		t.Fatalf("test-5.cvd (stock clamscan loads it): %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "test-6.freshclam.cld"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("DSIG:"))
	if i < 0 {
		t.Fatal("no DSIG in test-6.freshclam.cld")
	}
	b[i+10] ^= 'a' ^ 'b'
	p := filepath.Join(t.TempDir(), "test.cld")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(p, nil); CheckOf(err) != CheckDSig {
		t.Fatalf("CLD with a changed DSIG: got %v, want check %s", err, CheckDSig)
	}
}
