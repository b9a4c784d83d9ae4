package cvd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A cdiff is "ClamAV-Diff:VERSION:LENGTH:" + gzip(script) + ":" + signature.
// The signature (RSA-PSS/SHA-256, ClamAV's cdiff key) covers every byte
// before the last ':' and sits in the last 350 bytes.
//
// The script (libclamav_rust/src/cdiff.rs) is one command per line:
//
//	OPEN name            start editing a database member (created by ADD if absent)
//	ADD line...          append line at CLOSE
//	DEL n prefix         delete line n, which must start with prefix
//	XCHG n prefix new... replace line n (must start with prefix) by new
//	CLOSE                apply the edits in line order, then the additions
//	MOVE src dst a pa b pb  move lines a..b of src (starting with pa, pb) to the end of dst
//	UNLINK name          delete a member
//	# ...                comment
//
// Line numbers count from 1 in the member as it was at OPEN.

const (
	maxCDiffSig     = 350     // ClamAV's SIG_SIZE
	maxScriptLine   = 1 << 20 // one signature line
	maxPendingBytes = 64 << 20
)

// cdiffError is a malformed or unsafe cdiff; reported as CheckCDiff.
type cdiffError struct{ msg string }

func (e *cdiffError) Error() string { return e.msg }

func cdiffErrorf(format string, a ...any) error { return &cdiffError{fmt.Sprintf(format, a...)} }

// cdiffLayout locates the parts of a cdiff file.
type cdiffLayout struct {
	hdr      cdiffHeader
	colon    int64  // offset of the ':' before the signature
	sig      string // encoded signature
	fileSize int64
}

// readCDiffLayout reads the header and the signature trailer of a cdiff.
func readCDiffLayout(f io.ReaderAt, size int64) (*cdiffLayout, error) {
	head := make([]byte, min(size, 64))
	if _, err := f.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, &ioError{err}
	}
	h, err := parseCDiffHeader(head)
	if err != nil {
		return nil, cdiffErrorf("%v", err)
	}
	tailLen := min(size-int64(h.Size), maxCDiffSig+1)
	tail := make([]byte, tailLen)
	if _, err := f.ReadAt(tail, size-tailLen); err != nil && err != io.EOF {
		return nil, &ioError{err}
	}
	i := bytes.LastIndexByte(tail, ':')
	if i < 0 {
		return nil, cdiffErrorf("no ':' and signature in the last %d bytes (file truncated?)", maxCDiffSig)
	}
	sig := string(tail[i+1:])
	if _, err := decodeClamSig(sig); err != nil {
		return nil, cdiffErrorf("the signature after the last ':' is not ClamAV base-64 (file truncated or damaged?)")
	}
	l := &cdiffLayout{hdr: h, colon: size - tailLen + int64(i), sig: sig, fileSize: size}
	if l.colon < int64(h.Size)+18 { // the smallest gzip stream is 18 bytes
		return nil, cdiffErrorf("no compressed script between the header and the signature")
	}
	return l, nil
}

// verifyCDiff checks a cdiff's signature, then its script's syntax.
func verifyCDiff(path string, f *os.File, size int64, t *Trust, o verifyOpts) (*Info, error) {
	l, err := readCDiffLayout(f, size)
	if err != nil {
		var ioe *ioError
		if errors.As(err, &ioe) {
			return nil, ioErr(path, ioe.err)
		}
		return nil, verr(path, CheckCDiff, err, "%v", err)
	}
	// Pass 1: the signed digest and the whole-file SHA-256.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, ioErr(path, err)
	}
	signed, whole := sha256.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(signed, whole), io.LimitReader(f, l.colon)); err != nil {
		return nil, ioErr(path, err)
	}
	if _, err := io.Copy(whole, f); err != nil {
		return nil, ioErr(path, err)
	}
	info := &Info{
		Path:         path,
		Name:         dbNameFromPath(path),
		Kind:         KindCDiff,
		Header:       Header{Magic: cdiffMagic, Version: l.hdr.Version},
		Size:         size,
		SHA256:       hex.EncodeToString(whole.Sum(nil)),
		CDiffVersion: l.hdr.Version,
	}
	if o.inspect {
		return info, nil
	}
	if !o.structural {
		digest := signed.Sum(nil)
		var signer *rsa.PublicKey
		for _, k := range append([]*rsa.PublicKey{officialCDiffKey}, t.Keys...) {
			if verifyPSS(k, digest, l.sig) {
				signer = k
				break
			}
		}
		switch {
		case signer == nil:
			return nil, verr(path, CheckCDiff, nil, "signature does not verify with ClamAV's cdiff key or any of the %d configured keys", len(t.Keys))
		case signer == officialCDiffKey:
			info.SignedBy = SignedByClamAV
		default:
			info.SignedBy = signerName(signer)
		}
	}
	if v, ok := versionFromName(path); ok && v != l.hdr.Version {
		return nil, verr(path, CheckVersion, nil, "file name says version %d, the cdiff header says %d", v, l.hdr.Version)
	}
	// Pass 2: the script, syntax and names only.
	if _, err := runScript(f, l, t.Limits, func(*scriptCmd) error { return nil }); err != nil {
		var ioe *ioError
		if errors.As(err, &ioe) {
			return nil, ioErr(path, ioe.err)
		}
		return nil, verr(path, CheckCDiff, err, "script: %v", err)
	}
	if o.checkSign {
		if info.Sign, info.SignFile, err = checkSignBeside(path, 0, whole.Sum(nil), t); err != nil {
			return nil, err
		}
	}
	return info, nil
}

// versionFromName reads N from "NAME-N.cdiff".
func versionFromName(path string) (uint, bool) {
	base, ok := strings.CutSuffix(filepath.Base(path), ".cdiff")
	if !ok {
		return 0, false
	}
	i := strings.LastIndexByte(base, '-')
	if i < 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(base[i+1:], 10, 32)
	if err != nil {
		return 0, false
	}
	return uint(v), true
}

// runScript inflates the script of the cdiff in f and hands every command to
// fn, returning the SHA-256 of the whole file as read (so a caller applying
// the script can tell the file did not change since it was verified).
func runScript(f io.ReadSeeker, l *cdiffLayout, lim Limits, fn func(*scriptCmd) error) ([]byte, error) {
	lim = lim.withDefaults()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, &ioError{err}
	}
	whole := sha256.New()
	tr := io.TeeReader(ioReader{f}, whole)
	if _, err := io.CopyN(io.Discard, tr, int64(l.hdr.Size)); err != nil {
		return nil, &ioError{err}
	}
	if l.hdr.ScriptLen > lim.MaxBytes {
		return nil, cdiffErrorf("declared script length %d is more than the limit of %d", l.hdr.ScriptLen, lim.MaxBytes)
	}
	cr := &countingReader{r: io.LimitReader(tr, l.colon-int64(l.hdr.Size))}
	bz := bufio.NewReader(cr) // ours, so bytes after the gzip member can be counted
	zr, err := gzip.NewReader(bz)
	if err != nil {
		return nil, cdiffErrorf("compressed script: %v", err)
	}
	zr.Multistream(false)
	body := &ratioReader{r: zr, in: cr, max: lim.MaxRatio, declared: l.hdr.ScriptLen}
	n, err := parseScript(body, fn)
	if err != nil {
		return nil, err
	}
	// The gzip stream must end exactly at the signature's ':'.
	rest := int64(bz.Buffered())
	k, err := io.Copy(io.Discard, cr)
	if err != nil {
		return nil, &ioError{err}
	}
	if rest += k; rest != 0 {
		return nil, cdiffErrorf("%d bytes between the compressed script and the signature", rest)
	}
	if n != l.hdr.ScriptLen {
		return nil, cdiffErrorf("script is %d bytes, the header says %d", n, l.hdr.ScriptLen)
	}
	if _, err := io.Copy(whole, f); err != nil {
		return nil, &ioError{err}
	}
	return whole.Sum(nil), nil
}

// ioReader marks read errors of the underlying file as I/O errors.
type ioReader struct{ r io.Reader }

func (r ioReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && err != io.EOF {
		err = &ioError{err}
	}
	return n, err
}

// ratioReader refuses output far larger than the compressed input, or
// longer than the length the header declared, and names gzip errors.
type ratioReader struct {
	r        io.Reader
	in       *countingReader
	out      int64
	max      int64
	declared int64
}

func (r *ratioReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.out += int64(n)
	switch {
	case r.out > r.declared:
		return n, cdiffErrorf("script is longer than the %d bytes the header declares", r.declared)
	case r.out > r.max*r.in.n+ratioSlack:
		return n, cdiffErrorf("gzip bomb: %d bytes inflated from %d", r.out, r.in.n)
	case err == nil, err == io.EOF:
		return n, err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, cdiffErrorf("compressed script truncated")
	}
	var ioe *ioError
	if errors.As(err, &ioe) {
		return n, err
	}
	return n, cdiffErrorf("compressed script: %v", err)
}

// scriptCmd is one parsed script command.
type scriptCmd struct {
	Op    string // OPEN ADD DEL XCHG CLOSE MOVE UNLINK
	Line  int    // line in the script, for messages
	Name  string // OPEN, UNLINK: member; MOVE: source
	Dst   string // MOVE destination
	N, N2 int    // DEL/XCHG line; MOVE first and last line
	Pat   []byte // DEL/XCHG: expected prefix; MOVE: prefix of the first line
	Pat2  []byte // MOVE: prefix of the last line
	Data  []byte // ADD: the line to append; XCHG: the new line
}

// parseScript reads a cdiff script, validates every command and its place
// (OPEN...CLOSE nesting, one edit per line number, plain member names) and
// calls fn for each; it returns the script's length in bytes.
func parseScript(r io.Reader, fn func(*scriptCmd) error) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var total int64
	open := ""
	edited := map[int]bool{}
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br, maxScriptLine)
		total += int64(len(line))
		if err != nil && err != io.EOF {
			if errors.Is(err, errLineTooLong) {
				return total, cdiffErrorf("line %d is longer than %d bytes", lineNo, maxScriptLine)
			}
			return total, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		text := bytes.TrimSuffix(line, []byte("\n"))
		if bytes.IndexByte(text, 0) >= 0 {
			return total, cdiffErrorf("line %d contains a NUL byte", lineNo)
		}
		if len(text) > 0 && text[0] == '#' {
			continue
		}
		c, perr := parseCommand(text)
		if perr != nil {
			return total, cdiffErrorf("line %d: %v", lineNo, perr)
		}
		c.Line = lineNo
		switch c.Op {
		case "OPEN":
			if open != "" {
				return total, cdiffErrorf("line %d: OPEN %s while %s is still open", lineNo, c.Name, open)
			}
			open = c.Name
			clear(edited)
		case "ADD", "DEL", "XCHG":
			if open == "" {
				return total, cdiffErrorf("line %d: %s without OPEN", lineNo, c.Op)
			}
			if c.Op != "ADD" {
				if edited[c.N] {
					return total, cdiffErrorf("line %d: two edits of line %d of %s", lineNo, c.N, open)
				}
				edited[c.N] = true
			}
		case "CLOSE":
			if open == "" {
				return total, cdiffErrorf("line %d: CLOSE without OPEN", lineNo)
			}
			c.Name = open
			open = ""
		case "MOVE", "UNLINK":
			if open != "" {
				return total, cdiffErrorf("line %d: %s while %s is open", lineNo, c.Op, open)
			}
		}
		if err := fn(c); err != nil {
			return total, err
		}
		if err == io.EOF {
			break
		}
	}
	if open != "" {
		return total, cdiffErrorf("script ends with %s still open (no CLOSE)", open)
	}
	return total, nil
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line including its '\n' (absent at the end of input),
// refusing lines longer than max without buffering them.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var out []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(out)+len(frag) > max+1 {
			return nil, errLineTooLong
		}
		out = append(out, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		return out, err
	}
}

// parseCommand parses one script line (without its newline).
func parseCommand(line []byte) (*scriptCmd, error) {
	op, rest, _ := bytes.Cut(line, []byte(" "))
	c := &scriptCmd{Op: string(op)}
	switch c.Op {
	case "OPEN", "UNLINK":
		name := string(rest)
		if !isPlainName(name) {
			return nil, fmt.Errorf("%s %q: not a plain database member name", c.Op, clip(name))
		}
		c.Name = name
	case "ADD":
		if len(rest) == 0 {
			return nil, errors.New("ADD without a line")
		}
		c.Data = rest
	case "DEL":
		f := bytes.Split(rest, []byte(" "))
		if len(f) < 2 || len(f[1]) == 0 {
			return nil, errors.New("DEL wants LINE PREFIX")
		}
		n, err := lineNumber(f[0])
		if err != nil {
			return nil, fmt.Errorf("DEL: %v", err)
		}
		c.N, c.Pat = n, f[1]
	case "XCHG":
		f := bytes.SplitN(rest, []byte(" "), 3)
		if len(f) != 3 || len(f[1]) == 0 {
			return nil, errors.New("XCHG wants LINE PREFIX NEWLINE")
		}
		n, err := lineNumber(f[0])
		if err != nil {
			return nil, fmt.Errorf("XCHG: %v", err)
		}
		c.N, c.Pat, c.Data = n, f[1], f[2]
	case "MOVE":
		f := bytes.Split(rest, []byte(" "))
		if len(f) < 6 {
			return nil, errors.New("MOVE wants SRC DST FIRST PREFIX LAST PREFIX")
		}
		c.Name, c.Dst = string(f[0]), string(f[1])
		for _, n := range []string{c.Name, c.Dst} {
			if !isPlainName(n) {
				return nil, fmt.Errorf("MOVE %q: not a plain database member name", clip(n))
			}
		}
		if c.Name == c.Dst {
			return nil, errors.New("MOVE to the same member")
		}
		var err error
		if c.N, err = lineNumber(f[2]); err != nil {
			return nil, fmt.Errorf("MOVE: %v", err)
		}
		if c.N2, err = lineNumber(f[4]); err != nil {
			return nil, fmt.Errorf("MOVE: %v", err)
		}
		if c.N2 < c.N {
			return nil, fmt.Errorf("MOVE: last line %d before first line %d", c.N2, c.N)
		}
		c.Pat, c.Pat2 = f[3], f[5]
	case "CLOSE":
		if len(rest) != 0 {
			return nil, errors.New("CLOSE takes no argument")
		}
	default:
		return nil, fmt.Errorf("unknown command %q", clip(string(op)))
	}
	return c, nil
}

func lineNumber(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 9 || len(bytes.Trim(b, "0123456789")) != 0 {
		return 0, fmt.Errorf("line number %q is not a number", clip(string(b)))
	}
	n, _ := strconv.Atoi(string(b))
	if n < 1 {
		return 0, errors.New("line number 0")
	}
	return n, nil
}
