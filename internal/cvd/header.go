package cvd

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HeaderSize is the fixed size of a .cvd/.cld/.cud header.
const HeaderSize = 512

const (
	vdbMagic   = "ClamAV-VDB"
	cdiffMagic = "ClamAV-Diff"
)

// buildTimeLayout is how sigtool writes the header's build time
// ("22 Jun 2021 21-34 -0400"): strftime "%d %b %Y %H-%M %z".
const buildTimeLayout = "02 Jan 2006 15-04 -0700"

// headerError is a malformed header; callers wrap it in a VerifyError with
// CheckHeader.
type headerError struct{ msg string }

func (e *headerError) Error() string { return e.msg }

func headerErrorf(format string, a ...any) error { return &headerError{fmt.Sprintf(format, a...)} }

// ParseHeader parses a 512-byte .cvd/.cld/.cud header.
//
// The header must be printable ASCII throughout (NUL padding is refused:
// ClamAV's C parser would silently cut the header at the first NUL), padded
// with spaces, with exactly nine colon-separated fields:
// ClamAV-VDB:build time:version:sigs:f-level:md5:dsig:builder:stime.
func ParseHeader(b []byte) (Header, error) {
	if len(b) != HeaderSize {
		return Header{}, headerErrorf("header is %d bytes, want %d", len(b), HeaderSize)
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			return Header{}, headerErrorf("byte %d of the header is 0x%02x, not printable ASCII", i, c)
		}
	}
	return parseHeaderLine(string(bytes.TrimRight(b, " ")))
}

// parseHeaderLine parses the header text without padding; the first line of
// a .info file has the same form.
func parseHeaderLine(s string) (Header, error) {
	if !strings.HasPrefix(s, vdbMagic+":") {
		return Header{}, headerErrorf("header does not start with %q", vdbMagic+":")
	}
	f := strings.Split(s, ":")
	if len(f) != 9 {
		return Header{}, headerErrorf("header has %d colon-separated fields, want 9", len(f))
	}
	h := Header{Magic: f[0], BuildTime: f[1], MD5: f[5], DSig: f[6], Builder: f[7]}
	if h.BuildTime == "" {
		return Header{}, headerErrorf("header build time is empty")
	}
	if _, err := time.Parse(buildTimeLayout, h.BuildTime); err != nil {
		return Header{}, headerErrorf("header build time %q is not like %q", h.BuildTime, buildTimeLayout)
	}
	var err error
	if h.Version, err = parseUintField("version", f[2]); err != nil {
		return Header{}, err
	}
	if h.Sigs, err = parseUintField("signature count", f[3]); err != nil {
		return Header{}, err
	}
	if h.FLevel, err = parseUintField("f-level", f[4]); err != nil {
		return Header{}, err
	}
	if h.MD5 != "X" && !isLowerHex(h.MD5, 32) {
		return Header{}, headerErrorf("header MD5 %q is neither 32 lowercase hex digits nor X", clip(h.MD5))
	}
	if h.DSig != "X" {
		if _, err := decodeClamSig(h.DSig); err != nil {
			return Header{}, headerErrorf("header signature field is neither X nor ClamAV base-64 (%d chars)", len(h.DSig))
		}
		if h.MD5 == "X" {
			return Header{}, headerErrorf("header has a signature but no MD5")
		}
	}
	if h.Builder == "" || len(h.Builder) > 64 {
		return Header{}, headerErrorf("header builder name is empty or longer than 64 characters")
	}
	st, err := parseUintField("build time in seconds", f[8])
	if err != nil {
		return Header{}, err
	}
	h.Time = time.Unix(int64(st), 0).UTC()
	return h, nil
}

// parseUintField parses a decimal field of at most 10 digits that fits 32
// bits: no sign, no spaces, no leading '+'.
func parseUintField(name, s string) (uint, error) {
	if s == "" || len(s) > 10 {
		return 0, headerErrorf("header %s %q is not a number", name, clip(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, headerErrorf("header %s %q is not a number", name, clip(s))
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, headerErrorf("header %s %q is out of range", name, clip(s))
	}
	return uint(v), nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// line is the header text as it appears in the file and as the first line of
// the .info: md5 and dsig may be replaced by "X".
func (h Header) line(md5, dsig string) string {
	return fmt.Sprintf("%s:%s:%d:%d:%d:%s:%s:%s:%d", vdbMagic, h.BuildTime, h.Version, h.Sigs,
		h.FLevel, md5, dsig, h.Builder, h.Time.Unix())
}

// encodeHeader pads the header line to 512 bytes with spaces, as sigtool and
// freshclam do.
func encodeHeader(line string) ([]byte, error) {
	if len(line) > HeaderSize {
		return nil, fmt.Errorf("header is %d bytes, longer than %d (builder name too long?)", len(line), HeaderSize)
	}
	b := bytes.Repeat([]byte{' '}, HeaderSize)
	copy(b, line)
	return b, nil
}

// sameDatabase reports which field, if any, differs between the file header
// and the .info first line; the MD5 and signature fields are not compared
// (the .info has X there).
func sameDatabase(h, i Header) string {
	switch {
	case h.BuildTime != i.BuildTime:
		return "build time"
	case h.Version != i.Version:
		return "version"
	case h.Sigs != i.Sigs:
		return "signature count"
	case h.FLevel != i.FLevel:
		return "f-level"
	case h.Builder != i.Builder:
		return "builder"
	case !h.Time.Equal(i.Time):
		return "build time in seconds"
	}
	return ""
}

// cdiffHeader is the "ClamAV-Diff:VERSION:LENGTH:" prefix of a cdiff.
type cdiffHeader struct {
	Version   uint
	ScriptLen int64 // decompressed script length the builder declared
	Size      int   // bytes of the prefix, including the last ':'
}

var errNotCDiff = errors.New("not a cdiff")

// parseCDiffHeader parses the cdiff prefix from the first bytes of a file.
func parseCDiffHeader(b []byte) (cdiffHeader, error) {
	if !bytes.HasPrefix(b, []byte(cdiffMagic+":")) {
		return cdiffHeader{}, errNotCDiff
	}
	rest := b[len(cdiffMagic)+1:]
	var h cdiffHeader
	var fields [2]uint64
	off := len(cdiffMagic) + 1
	for i := range fields {
		j := bytes.IndexByte(rest, ':')
		if j < 0 || j > 10 {
			return cdiffHeader{}, errors.New("cdiff header is not ClamAV-Diff:VERSION:LENGTH:")
		}
		v, err := parseUintField([]string{"version", "script length"}[i], string(rest[:j]))
		if err != nil {
			return cdiffHeader{}, errors.New("cdiff header " + err.Error()[len("header "):])
		}
		fields[i] = uint64(v)
		rest = rest[j+1:]
		off += j + 1
	}
	h.Version, h.ScriptLen, h.Size = uint(fields[0]), int64(fields[1]), off
	if h.Version == 0 {
		return cdiffHeader{}, errors.New("cdiff header version is 0")
	}
	return h, nil
}
