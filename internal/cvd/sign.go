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

// checkSignBeside applies the .sign policy of t to path+".sign".
func checkSignBeside(path string, sha256sum []byte, t *Trust) (string, error) {
	if t.SignRoots == nil {
		return SignUnchecked, nil
	}
	signPath := path + ".sign"
	b, err := readBounded(signPath, maxSignBytes)
	if errors.Is(err, os.ErrNotExist) {
		if t.RequireSign {
			return "", verr(path, CheckSign, nil, "%s is missing and signatures are required (require_sign)", filepath.Base(signPath))
		}
		return SignAbsent, nil
	}
	if err != nil {
		return "", verr(path, CheckSign, err, "read %s: %v", filepath.Base(signPath), err)
	}
	if err := verifySign(b, path, sha256sum, t.SignRoots); err != nil {
		return "", verr(path, CheckSign, err, "%s: %v", filepath.Base(signPath), err)
	}
	return SignVerified, nil
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
