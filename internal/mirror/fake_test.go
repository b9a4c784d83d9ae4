package mirror

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
)

// fakeVerifier stands in for internal/cvd in unit tests of the store. Its
// files are one header line:
//
//	ClamAV-VDB:FAKE:<version>:<kind>:<db>:<signer>      a database
//	ClamAV-Diff:<version>:FAKE[:BAD]                      a cdiff (BAD: patching fails)
//
// Anything else fails verification with CheckFormat.
type fakeVerifier struct {
	patches int // Patch calls, to check the pipeline patched
}

func fakeDB(db string, v uint, kind cvd.Kind, signer string) []byte {
	return []byte(fmt.Sprintf("ClamAV-VDB:FAKE:%d:%s:%s:%s\n", v, kind, db, signer))
}

func fakeCDiff(v uint, bad bool) []byte {
	s := fmt.Sprintf("ClamAV-Diff:%d:FAKE", v)
	if bad {
		s += ":BAD"
	}
	return []byte(s + "\n")
}

func (f *fakeVerifier) Verify(path string) (*cvd.Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &cvd.VerifyError{File: path, Check: cvd.CheckIO, Reason: err.Error()}
	}
	sum := sha256.Sum256(b)
	info := &cvd.Info{Path: path, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
	line := strings.TrimSuffix(string(b), "\n")
	p := strings.SplitN(line, ":", 6)
	switch {
	case len(p) == 6 && p[0] == "ClamAV-VDB" && p[1] == "FAKE":
		v, err := strconv.Atoi(p[2])
		if err != nil {
			break
		}
		info.Kind, info.Name, info.SignedBy = cvd.Kind(p[3]), p[4], p[5]
		info.Header = cvd.Header{Magic: "ClamAV-VDB", Version: uint(v), BuildTime: "26 Nov 2026 05-00 +0000",
			Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(v) * time.Hour), Sigs: uint(v) * 10, FLevel: 90}
		return info, nil
	case (len(p) == 3 || len(p) == 4) && p[0] == "ClamAV-Diff" && p[2] == "FAKE":
		v, err := strconv.Atoi(p[1])
		if err != nil {
			break
		}
		info.Kind, info.CDiffVersion, info.SignedBy, info.Name = cvd.KindCDiff, uint(v), cvd.SignedByClamAV, "x"
		return info, nil
	}
	return nil, &cvd.VerifyError{File: path, Check: cvd.CheckFormat, Reason: "not a fake database"}
}

func (f *fakeVerifier) Patch(base string, cdiffs []string, out string) (*cvd.Info, error) {
	f.patches++
	bi, err := f.Verify(base)
	if err != nil {
		return nil, err
	}
	v := bi.Header.Version
	for _, c := range cdiffs {
		ci, err := f.Verify(c)
		if err != nil {
			return nil, err
		}
		if ci.CDiffVersion != v+1 {
			return nil, &cvd.VerifyError{File: c, Check: cvd.CheckVersion, Reason: "chain"}
		}
		if b, _ := os.ReadFile(c); bytes.Contains(b, []byte("BAD")) {
			return nil, &cvd.VerifyError{File: out, Check: cvd.CheckDSig, Reason: "after patching: DSIG does not verify"}
		}
		v++
	}
	if err := writeFileAtomic(out, fakeDB(bi.Name, v, cvd.KindCLD, bi.SignedBy), 0o644); err != nil {
		return nil, err
	}
	return f.Verify(out)
}

// newTestStore opens a store on a temporary data directory with the fake verifier.
func newTestStore(t *testing.T, ret int) (*Store, *fakeVerifier) {
	t.Helper()
	fv := &fakeVerifier{}
	s, err := Open(Options{DataDir: t.TempDir(), Retention: retention(30, ret), Verifier: fv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fv
}

// writeFiles writes name -> content into a new directory and returns the paths in order.
func writeFiles(t *testing.T, files ...any) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for i := 0; i < len(files); i += 2 {
		p := filepath.Join(dir, files[i].(string))
		if err := os.WriteFile(p, files[i+1].([]byte), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
