package cvd

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
)

// Limits on the .info file: a few hundred bytes per member and one header.
const (
	maxInfoBytes = 1 << 20
	maxInfoLine  = 1024
)

// infoFile is a parsed .info: the header line, the member list and the DSIG.
type infoFile struct {
	Header  Header
	Files   []File // in .info order; SHA256 lowercase hex
	HasDSig bool   // false when the .info has no DSIG line (CUD)
	DSig    string // the signature as written; checked by verifyDSig, not here
	Signed  []byte // the bytes the DSIG covers: everything before "DSIG:"
}

// infoError is a malformed .info; callers report it as CheckInfo.
type infoError struct{ msg string }

func (e *infoError) Error() string { return e.msg }

func infoErrorf(format string, a ...any) error { return &infoError{fmt.Sprintf(format, a...)} }

// parseInfo parses a .info file: first line a ClamAV-VDB header, then
// NAME:SIZE:SHA256 lines, then optionally "DSIG:" and the signature as the
// last line. Lines are bounded, names must be plain member names, and
// nothing may follow the DSIG line.
func parseInfo(b []byte) (*infoFile, error) {
	if len(b) > maxInfoBytes {
		return nil, infoErrorf(".info is %d bytes, more than %d", len(b), maxInfoBytes)
	}
	if len(b) == 0 {
		return nil, infoErrorf(".info is empty")
	}
	inf := &infoFile{}
	seen := map[string]bool{}
	rest := b
	off := 0
	for lineNo := 1; len(rest) > 0; lineNo++ {
		var line []byte
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:nl], rest[nl+1:]
		}
		start := off
		off += len(line) + 1
		if len(line) > maxInfoLine {
			return nil, infoErrorf(".info line %d is longer than %d bytes", lineNo, maxInfoLine)
		}
		for _, c := range line {
			if c < 0x20 || c > 0x7e {
				return nil, infoErrorf(".info line %d contains byte 0x%02x", lineNo, c)
			}
		}
		s := string(line)
		if lineNo == 1 {
			h, err := parseHeaderLine(s)
			if err != nil {
				return nil, infoErrorf(".info first line: %s", strings.TrimPrefix(err.Error(), "header "))
			}
			inf.Header = h
			continue
		}
		if sig, ok := strings.CutPrefix(s, "DSIG:"); ok {
			// A damaged signature value is reported by verifyDSig as a
			// signature failure (CheckDSig), like any other altered DSIG.
			if len(rest) > 0 {
				return nil, infoErrorf(".info has %d bytes after the DSIG line", len(rest))
			}
			inf.HasDSig, inf.DSig = true, sig
			inf.Signed = b[:start]
			return inf, nil
		}
		f := strings.Split(s, ":")
		if len(f) != 3 {
			return nil, infoErrorf(".info line %d has %d fields, want NAME:SIZE:SHA256", lineNo, len(f))
		}
		if !isPlainName(f[0]) {
			return nil, infoErrorf(".info line %d names %q, not a plain member name", lineNo, clip(f[0]))
		}
		if seen[f[0]] {
			return nil, infoErrorf(".info lists %s twice", f[0])
		}
		seen[f[0]] = true
		if f[1] == "" || len(f[1]) > 12 || strings.TrimLeft(f[1], "0123456789") != "" {
			return nil, infoErrorf(".info line %d: size %q is not a number", lineNo, clip(f[1]))
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, infoErrorf(".info line %d: size %q is not a number", lineNo, clip(f[1]))
		}
		if !isLowerHex(strings.ToLower(f[2]), 64) {
			return nil, infoErrorf(".info line %d: %q is not a SHA-256", lineNo, clip(f[2]))
		}
		inf.Files = append(inf.Files, File{Name: f[0], Size: size, SHA256: strings.ToLower(f[2])})
	}
	if inf.Header.Magic == "" {
		return nil, infoErrorf(".info has no header line")
	}
	return inf, nil
}

// verifyDSig checks the .info DSIG against keys, returning the one that
// verifies.
func (inf *infoFile) verifyDSig(keys []*rsa.PublicKey) (*rsa.PublicKey, bool) {
	digest := sha256.Sum256(inf.Signed)
	for _, k := range keys {
		if verifyPSS(k, digest[:], inf.DSig) {
			return k, true
		}
	}
	return nil, false
}

// encodeInfo writes a .info: the header line with X for MD5 and signature,
// one line per file, and a DSIG line when sign is set.
func encodeInfo(h Header, files []File, sign func(digest []byte) (string, error)) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(h.line("X", "X"))
	b.WriteByte('\n')
	for _, f := range files {
		fmt.Fprintf(&b, "%s:%d:%s\n", f.Name, f.Size, f.SHA256)
	}
	if sign != nil {
		digest := sha256.Sum256(b.Bytes())
		sig, err := sign(digest[:])
		if err != nil {
			return nil, err
		}
		b.WriteString("DSIG:" + sig + "\n")
	}
	return b.Bytes(), nil
}

// withoutDSig returns the .info without its DSIG line: what clamd expects in a
// CUD, where a DSIG line is a parse error ("Malformed database").
func (inf *infoFile) withoutDSig(orig []byte) []byte {
	if !inf.HasDSig {
		return orig
	}
	return inf.Signed
}
