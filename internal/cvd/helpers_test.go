package cvd

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

// Keys generated once per test binary: one plays the organisation's key,
// the other an attacker's.
var (
	keyOnce          sync.Once
	orgKey, evilKey  *rsa.PrivateKey
	keyErr           error
	eicar            = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
	testBuildTime, _ = time.Parse(buildTimeLayout, "08 Mar 2024 09-21 +0000")
)

func testKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		if orgKey, keyErr = GenerateKey(); keyErr == nil {
			evilKey, keyErr = GenerateKey()
		}
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return orgKey, evilKey
}

func orgTrust(t testing.TB) *Trust {
	k, _ := testKeys(t)
	return &Trust{Keys: []*rsa.PublicKey{&k.PublicKey}}
}

// testdata returns a file of the real ClamAV test data.
func testdata(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(testutil.ClamAVTestdata(t), name)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawEntry is a tar entry written without any validation, to build
// malicious archives.
type rawEntry struct {
	name string
	typ  byte // 0 means '0'
	link string
	data []byte
	size int64 // -1: len(data)
}

func entry(name string, data []byte) rawEntry { return rawEntry{name: name, data: data, size: -1} }

// rawTar writes entries with correct checksums and padding.
func rawTar(entries []rawEntry, endMarker bool) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		var h [tarBlock]byte
		copy(h[0:100], e.name)
		copy(h[100:108], "0000644\x00")
		size := e.size
		if size < 0 {
			size = int64(len(e.data))
		}
		copy(h[124:136], fmt.Sprintf("%011o\x00", size))
		copy(h[136:148], "00000000000\x00")
		h[156] = '0'
		if e.typ != 0 {
			h[156] = e.typ
		}
		copy(h[157:257], e.link)
		copy(h[257:265], "ustar\x0000")
		var sum int64
		for i, c := range h {
			if i >= 148 && i < 156 {
				c = ' '
			}
			sum += int64(c)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
		b.Write(h[:])
		b.Write(e.data)
		if p := (tarBlock - len(e.data)%tarBlock) % tarBlock; p > 0 {
			b.Write(make([]byte, p))
		}
	}
	if endMarker {
		b.Write(make([]byte, 2*tarBlock))
	}
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func testHeader(version, sigs uint) Header {
	return Header{Magic: vdbMagic, BuildTime: testBuildTime.Format(buildTimeLayout), Version: version, Sigs: sigs,
		FLevel: 90, Builder: "tester", Time: testBuildTime.UTC()}
}

func fileOf(name string, data []byte) File {
	s := sha256.Sum256(data)
	return File{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
}

// infoFor makes a .info listing the entries, signed with key (nil: none).
func infoFor(t testing.TB, h Header, key *rsa.PrivateKey, entries ...rawEntry) []byte {
	t.Helper()
	var files []File
	for _, e := range entries {
		files = append(files, fileOf(e.name, e.data))
	}
	var sign func([]byte) (string, error)
	if key != nil {
		sign = func(d []byte) (string, error) { return signPSS(key, d) }
	}
	b, err := encodeInfo(h, files, sign)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signedFile assembles header+body, with the body MD5 in the header and,
// when key is set, the header signature.
func signedFile(t testing.TB, h Header, key *rsa.PrivateKey, body []byte) []byte {
	t.Helper()
	sum := md5.Sum(body)
	md := hex.EncodeToString(sum[:])
	sig := "X"
	if key != nil {
		sig = signLegacy(key, sum[:])
	}
	hb, err := encodeHeader(h.line(md, sig))
	if err != nil {
		t.Fatal(err)
	}
	return append(hb, body...)
}

// Sample members of the organisation databases the tests build.
var (
	sampleHDB = entry("acme.hdb", []byte("44d88612fea8a8f36de82e1278abb02f:68:Acme.Test.Eicar\n"))
	sampleNDB = entry("acme.ndb", []byte("Acme.Test.Marker:0:*:41434d452d4d41524b45522d31\n"))
	copying   = entry("COPYING", []byte("acme signatures, for testing\n"))
)

// goodDB is a valid CVD of database "acme" signed with the org key, built
// from entries with their .info first; mutate tweaks the parts first.
func goodDB(t testing.TB, mutate func(h *Header, infoKey **rsa.PrivateKey, members *[]rawEntry)) []byte {
	t.Helper()
	key, _ := testKeys(t)
	h := testHeader(7, 2)
	infoKey := key
	members := []rawEntry{sampleHDB, sampleNDB}
	if mutate != nil {
		mutate(&h, &infoKey, &members)
	}
	info := infoFor(t, h, infoKey, sampleHDB, sampleNDB)
	all := append([]rawEntry{copying, entry("acme.info", info)}, members...)
	return signedFile(t, h, key, gz(rawTar(all, true)))
}

// makeCDiff builds a cdiff of script signed with key.
func makeCDiff(t testing.TB, version uint, script string, key *rsa.PrivateKey) []byte {
	t.Helper()
	b := []byte(fmt.Sprintf("ClamAV-Diff:%d:%d:", version, len(script)))
	b = append(b, gz([]byte(script))...)
	d := sha256.Sum256(b)
	sig, err := signPSS(key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return append(append(b, ':'), sig...)
}

// clamscan scans files with stock clamscan using only the databases in
// dbdir and returns its output; exit status 1 (found) is not an error.
func clamscan(t testing.TB, dbdir string, files ...string) string {
	t.Helper()
	bin := testutil.NeedCommand(t, "clamscan")
	args := append([]string{"--no-summary", "-d", dbdir}, files...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("clamscan %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return string(out)
}

// wantCheck fails unless err is a *VerifyError with check c.
func wantCheck(t testing.TB, err error, c Check) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want a %s failure", c)
	}
	if got := CheckOf(err); got != c {
		t.Fatalf("check %q, want %q: %v", got, c, err)
	}
}
