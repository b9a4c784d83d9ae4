package cvd

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/smallstep/pkcs7"
)

// ClamAV 1.5 detached signatures (".sign" beside a .cvd or .cdiff): a text
// file starting "#clamsign-1.0", then lines MINFL:MAXFL:pkcs7-pem:BASE64,
// each a DER PKCS#7 signature over the whole file.

// Info.Sign values.
const (
	SignVerified  = "verified"
	SignAbsent    = "absent"
	SignUnchecked = "unchecked"
)

const (
	maxSignBytes = 1 << 20
	maxSignLines = 64
)

// checkSignBeside applies the .sign policy of t to the .sign beside path
// (see signNames); version is the one in path's header (0 for a cdiff,
// whose name already carries it).
func checkSignBeside(path string, version uint, sha256sum []byte, t *Trust) (status, file string, err error) {
	if t.SignRoots == nil {
		return SignUnchecked, "", nil
	}
	names := signNames(path, version)
	signPath := findSign(names)
	if signPath == "" {
		if t.RequireSign {
			return "", "", verr(path, CheckSign, nil, "%s is missing and signatures are required (require_sign)", signNamesString(names))
		}
		return SignAbsent, "", nil
	}
	b, err := readBounded(signPath, maxSignBytes)
	if err != nil {
		return "", "", verr(path, CheckSign, err, "read %s: %v", filepath.Base(signPath), err)
	}
	if err := verifySign(b, path, sha256sum, t.SignRoots); err != nil {
		return "", "", verr(path, CheckSign, err, "%s: %v", filepath.Base(signPath), err)
	}
	return SignVerified, signPath, nil
}

// signNames are the names a .sign beside path may have, in the order they
// are looked for: FILE.sign, and for a database whose name carries no
// version (daily.cvd), DB-VERSION.EXT.sign with the header's version
// (daily-27480.cvd.sign): the name ClamAV 1.5 mirrors serve it under, and
// so what freshclam 1.5 and `avfleet mirror` downloads leave beside it.
func signNames(path string, version uint) []string {
	names := []string{path + ".sign"}
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	switch ext {
	case ".cvd", ".cld", ".cud":
	default:
		return names
	}
	if i := strings.LastIndexByte(stem, '-'); stem == "" || version == 0 || (i > 0 && isDigits(stem[i+1:])) {
		return names // daily-27480.cvd: FILE.sign is already that name
	}
	return append(names, filepath.Join(filepath.Dir(path), fmt.Sprintf("%s-%d%s.sign", stem, version, ext)))
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// findSign returns the first of names that is a regular file, or "".
func findSign(names []string) string {
	for _, n := range names {
		if st, err := os.Stat(n); err == nil && st.Mode().IsRegular() {
			return n
		}
	}
	return ""
}

func signNamesString(names []string) string {
	b := make([]string, len(names))
	for i, n := range names {
		b[i] = filepath.Base(n)
	}
	return strings.Join(b, " or ")
}

// FindSign returns the .sign file that goes with the database or cdiff at
// path (FILE.sign, or DB-VERSION.EXT.sign beside DB.EXT, the version read
// from the header), or "" when there is none. Verify looks for the same
// names; `mirror import` uses it to take the .sign along with its file.
func FindSign(path string) string {
	var version uint
	if head, err := readHead(path); err == nil {
		version = headerVersion(head)
	}
	return findSign(signNames(path, version))
}

// headerVersion reads only the version field of a database header (0 when
// there is none): finding the .sign needs no more, and the verifier judges
// the header when it verifies the file.
func headerVersion(head []byte) uint {
	f := strings.SplitN(string(head), ":", 4)
	if len(f) < 4 || f[0] != vdbMagic {
		return 0
	}
	v, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return 0
	}
	return uint(v)
}

// readHead reads the first HeaderSize bytes of path (fewer if it is shorter).
func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, HeaderSize)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	return b[:n], nil
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}

// signLine is one parsed signature line of a .sign file.
type signLine struct {
	MinFL, MaxFL uint // MaxFL 0 = no upper bound
	DER          []byte
}

// parseSignFile parses a .sign file. Every line is checked for syntax; the
// f-level ranges are recorded but not used to skip lines: avfleet verifies
// for a whole fleet, not for one running engine, so any line that verifies
// proves the signer.
func parseSignFile(b []byte) ([]signLine, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxSignBytes)
	var out []signLine
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if n == 1 {
			if line != "#clamsign-1.0" {
				return nil, fmt.Errorf("first line is %q, want #clamsign-1.0", clip(line))
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.SplitN(line, ":", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("line %d: want MINFL:MAXFL:pkcs7-pem:SIGNATURE", n)
		}
		var sl signLine
		minFL, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: minimum f-level %q is not a number", n, clip(f[0]))
		}
		sl.MinFL = uint(minFL)
		if f[1] != "" {
			maxFL, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil || maxFL < minFL {
				return nil, fmt.Errorf("line %d: maximum f-level %q is not a number >= the minimum", n, clip(f[1]))
			}
			sl.MaxFL = uint(maxFL)
		}
		if f[2] != "pkcs7-pem" {
			return nil, fmt.Errorf("line %d: signature type %q is not pkcs7-pem", n, clip(f[2]))
		}
		if sl.DER, err = base64.StdEncoding.DecodeString(f[3]); err != nil {
			return nil, fmt.Errorf("line %d: signature is not base64: %v", n, err)
		}
		out = append(out, sl)
		if len(out) > maxSignLines {
			return nil, fmt.Errorf("more than %d signatures", maxSignLines)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no signature lines")
	}
	return out, nil
}

// verifySign checks that at least one signature line of a .sign file is a
// valid detached PKCS#7 signature over the file, by a certificate chaining to
// roots.
func verifySign(b []byte, path string, sha256sum []byte, roots *x509.CertPool) error {
	lines, err := parseSignFile(b)
	if err != nil {
		return err
	}
	var last error
	for i, l := range lines {
		p7, err := pkcs7.Parse(l.DER)
		if err != nil {
			last = fmt.Errorf("signature %d: %v", i+1, err)
			continue
		}
		// Detached: the content is the file, hashed once already during
		// verification (SHA-256) or streamed again for other digests, never
		// loaded into memory.
		p7.Hasher = fileHasher{path: path, sha256: sha256sum}
		if err := p7.VerifyWithChain(roots); err != nil {
			last = fmt.Errorf("signature %d: %v", i+1, err)
			continue
		}
		return nil
	}
	return last
}

// fileHasher supplies the digest of the signed file to pkcs7.
type fileHasher struct {
	path   string
	sha256 []byte
}

func (h fileHasher) Hash(fn crypto.Hash, _ io.Reader) ([]byte, error) {
	if fn == crypto.SHA256 && h.sha256 != nil {
		return h.sha256, nil
	}
	if !fn.Available() {
		return nil, fmt.Errorf("digest %v not available", fn)
	}
	f, err := os.Open(h.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := fn.New()
	if _, err := io.Copy(d, f); err != nil {
		return nil, err
	}
	return d.Sum(nil), nil
}

// LoadSignRoots reads every PEM certificate in dir into a pool for .sign checks.
func LoadSignRoots(dir string) (*x509.CertPool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read certs dir: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	pool := x509.NewCertPool()
	count := 0
	for _, n := range names {
		b, err := readBounded(filepath.Join(dir, n), 4<<20)
		if err != nil {
			continue // a directory symlink or unreadable file is not a cert
		}
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certs dir: %s: %w", n, err)
			}
			pool.AddCert(c)
			count++
		}
	}
	if count == 0 {
		return nil, fmt.Errorf("certs dir %s holds no PEM certificate", dir)
	}
	return pool, nil
}
