package cvd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// Patch verifies base, applies the cdiffs in order (each must be the previous
// version + 1), verifies the result and writes it to out as a CLD, atomically
// (temp file in out's directory, fsync, rename). It returns the result's Info.
//
// The work happens in a temporary directory beside out: base is unpacked
// member by member, each cdiff script edits the members line by line, and
// the CLD is written from the directory the way freshclam writes it. The
// cdiffs also rewrite the .info (new header line, new sizes and hashes, new
// DSIG), so the result verifies with ClamAV's .info key like the CVD of the
// same version would. Nothing is held in memory beyond one script line and
// one OPEN...CLOSE block's edits.
//
// With t.RequireSign, every cdiff and a CVD base need a valid .sign beside
// them; a CLD base (made locally by an earlier patch) needs none, but one
// that is present must verify.
func Patch(base string, cdiffs []string, out string, t *Trust) (*Info, error) {
	if t == nil {
		t = &Trust{}
	}
	// A CLD is made locally by patching and can never have a .sign from
	// ClamAV: with require_sign the base must have one only if it is a CVD
	// (one that is present is always checked).
	relaxed := *t
	relaxed.RequireSign = false
	bi, _, err := verifyPath(base, &relaxed, verifyOpts{checkSign: true})
	if err != nil {
		return nil, err
	}
	if t.RequireSign && t.SignRoots != nil && bi.Kind == KindCVD && bi.Sign == SignAbsent {
		return nil, verr(base, CheckSign, nil, "%s is missing and signatures are required (require_sign)", signNamesString(signNames(base, bi.Header.Version)))
	}
	switch bi.Kind {
	case KindCDiff:
		return nil, verr(base, CheckFormat, nil, "is a cdiff; patch needs a .cvd or .cld as base")
	case KindCUD:
		return nil, verr(base, CheckFormat, nil, "is an unsigned database (cud); cdiffs patch signed .cvd/.cld files only")
	}
	infos := make([]*Info, len(cdiffs))
	for i, c := range cdiffs {
		ci, _, err := verifyPath(c, t, verifyOpts{checkSign: true})
		if err != nil {
			return nil, err
		}
		if ci.Kind != KindCDiff {
			return nil, verr(c, CheckFormat, nil, "is a %s, not a cdiff", ci.Kind)
		}
		if want := bi.Header.Version + uint(i) + 1; ci.CDiffVersion != want {
			return nil, verr(c, CheckVersion, nil, "cdiff makes version %d, but the chain needs %d here (base %s is version %d)",
				ci.CDiffVersion, want, filepath.Base(base), bi.Header.Version)
		}
		infos[i] = ci
	}

	work, err := os.MkdirTemp(filepath.Dir(out), ".avfleet-patch-*")
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	defer os.RemoveAll(work)
	ex, err := extract(base, filepath.Join(work, "db"), t, true)
	if err != nil {
		return nil, err
	}
	if ex.sha256 != bi.SHA256 {
		return nil, verr(base, CheckIO, nil, "file changed while it was being patched")
	}
	ap := &applier{dir: ex.dir, scratch: work, order: ex.order, lim: t.Limits.withDefaults()}
	for i, c := range cdiffs {
		if err := ap.applyFile(c, infos[i].SHA256, t.Limits); err != nil {
			return nil, err
		}
	}
	ex.order = ap.order
	if _, err := os.Stat(filepath.Join(ex.dir, ex.infoName)); err != nil {
		return nil, verr(out, CheckInfo, nil, "the cdiffs removed %s", ex.infoName)
	}

	tmp := filepath.Join(work, "result.cld")
	if err := ex.write(tmp, KindCLD); err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			ve.File = out
			return nil, ve
		}
		return nil, fmt.Errorf("patch: write %s: %w", out, err)
	}
	info, _, err := verifyPath(tmp, t, verifyOpts{})
	if err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			ve.File = out
			ve.Reason = "after patching: " + ve.Reason
		}
		return nil, err
	}
	want := bi.Header.Version + uint(len(cdiffs))
	if info.Header.Version != want {
		return nil, verr(out, CheckVersion, nil, "after patching the header says version %d, the cdiff chain ends at %d", info.Header.Version, want)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	if err := fsutil.SyncDir(filepath.Dir(out)); err != nil {
		return nil, err
	}
	info.Path = out
	info.Sign = SignUnchecked
	if t.SignRoots != nil {
		info.Sign = SignAbsent // the inputs' .sign files were checked; the result has none
	}
	return info, nil
}

// applier executes cdiff commands on a directory of database members.
type applier struct {
	dir     string // the members
	scratch string // temp files, same filesystem, never a member name
	order   []string
	lim     Limits

	open    string
	edits   map[int]*scriptCmd
	adds    bytes.Buffer
	pending int64
	file    string // cdiff being applied, for messages
}

// applyFile applies one verified cdiff; sum is its SHA-256 as verified, so
// a file replaced in between is refused rather than applied.
func (a *applier) applyFile(path, sum string, lim Limits) error {
	f, err := os.Open(path)
	if err != nil {
		return ioErr(path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ioErr(path, err)
	}
	l, err := readCDiffLayout(f, st.Size())
	if err != nil {
		return verr(path, CheckCDiff, err, "%v", err)
	}
	a.file = path
	got, err := runScript(f, l, lim, a.apply)
	if err != nil {
		var ioe *ioError
		if errors.As(err, &ioe) {
			return ioErr(path, ioe.err)
		}
		return verr(path, CheckCDiff, err, "applying: %v", err)
	}
	if fmt.Sprintf("%x", got) != sum {
		return verr(path, CheckIO, nil, "file changed while it was being applied")
	}
	return nil
}

func (a *applier) path(name string) string { return filepath.Join(a.dir, name) }

func (a *applier) exists(name string) bool {
	_, err := os.Lstat(a.path(name))
	return err == nil
}

func (a *applier) apply(c *scriptCmd) error {
	switch c.Op {
	case "OPEN":
		a.open, a.edits, a.pending = c.Name, map[int]*scriptCmd{}, 0
		a.adds.Reset()
	case "ADD":
		a.adds.Write(c.Data)
		a.adds.WriteByte('\n')
		return a.grow(c, len(c.Data)+1)
	case "DEL", "XCHG":
		a.edits[c.N] = c
		return a.grow(c, len(c.Pat)+len(c.Data)+64)
	case "CLOSE":
		return a.close(c)
	case "MOVE":
		return a.move(c)
	case "UNLINK":
		if !a.exists(c.Name) {
			return cdiffErrorf("script line %d: UNLINK %s: no such member", c.Line, c.Name)
		}
		if err := os.Remove(a.path(c.Name)); err != nil {
			return &ioError{err}
		}
		a.order = slices.DeleteFunc(a.order, func(n string) bool { return n == c.Name })
	}
	return nil
}

func (a *applier) grow(c *scriptCmd, n int) error {
	a.pending += int64(n)
	if a.pending > maxPendingBytes {
		return cdiffErrorf("script line %d: the OPEN %s block edits more than %d bytes", c.Line, a.open, maxPendingBytes)
	}
	return nil
}

// close applies the block's edits in line order, then appends its additions
// (creating the member if needed), as libclamav's cmd_close does.
func (a *applier) close(c *scriptCmd) error {
	name := c.Name
	if len(a.edits) > 0 {
		if !a.exists(name) {
			return cdiffErrorf("script line %d: DEL/XCHG on %s, which does not exist", c.Line, name)
		}
		if err := a.rewrite(name, func(lineNo int, line *lineReader, w io.Writer) error {
			e, ok := a.edits[lineNo]
			if !ok {
				return line.copyTo(w)
			}
			delete(a.edits, lineNo)
			if !line.hasPrefix(e.Pat) {
				return cdiffErrorf("script line %d: %s line %d of %s does not start with %q", e.Line, e.Op, lineNo, name, clip(string(e.Pat)))
			}
			if err := line.skip(); err != nil {
				return err
			}
			if e.Op == "XCHG" {
				if _, err := w.Write(e.Data); err != nil {
					return err
				}
				_, err := w.Write([]byte{'\n'})
				return err
			}
			return nil
		}); err != nil {
			return err
		}
		if len(a.edits) > 0 {
			var n []int
			for k := range a.edits {
				n = append(n, k)
			}
			slices.Sort(n)
			e := a.edits[n[0]]
			return cdiffErrorf("script line %d: %s of line %d, but %s is shorter", e.Line, e.Op, e.N, name)
		}
	}
	if a.adds.Len() > 0 {
		created := !a.exists(name)
		if created && len(a.order) >= a.lim.MaxFiles {
			return cdiffErrorf("script line %d: creating %s would exceed %d members", c.Line, name, a.lim.MaxFiles)
		}
		f, err := os.OpenFile(a.path(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return &ioError{err}
		}
		if _, err := f.Write(a.adds.Bytes()); err != nil {
			f.Close()
			return &ioError{err}
		}
		if err := f.Close(); err != nil {
			return &ioError{err}
		}
		if created {
			a.order = append(a.order, name)
		}
	}
	a.open, a.edits, a.pending = "", nil, 0
	a.adds.Reset()
	return nil
}

// move moves lines N..N2 of one member to the end of another.
func (a *applier) move(c *scriptCmd) error {
	for _, n := range []string{c.Name, c.Dst} {
		if !a.exists(n) {
			return cdiffErrorf("script line %d: MOVE: %s does not exist", c.Line, n)
		}
	}
	dst, err := os.OpenFile(a.path(c.Dst), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return &ioError{err}
	}
	dw := bufio.NewWriter(dst)
	last := 0
	err = a.rewrite(c.Name, func(lineNo int, line *lineReader, w io.Writer) error {
		last = lineNo
		switch {
		case lineNo < c.N || lineNo > c.N2:
			return line.copyTo(w)
		case lineNo == c.N && !line.hasPrefix(c.Pat):
			return cdiffErrorf("script line %d: MOVE: line %d of %s does not start with %q", c.Line, lineNo, c.Name, clip(string(c.Pat)))
		case lineNo == c.N2 && !line.hasPrefix(c.Pat2):
			return cdiffErrorf("script line %d: MOVE: line %d of %s does not start with %q", c.Line, lineNo, c.Name, clip(string(c.Pat2)))
		}
		return line.copyTo(dw)
	})
	if err == nil && last < c.N2 {
		err = cdiffErrorf("script line %d: MOVE of lines %d-%d, but %s has %d lines", c.Line, c.N, c.N2, c.Name, last)
	}
	if ferr := dw.Flush(); err == nil && ferr != nil {
		err = &ioError{ferr}
	}
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = &ioError{cerr}
	}
	return err
}

// rewrite streams member name through fn line by line into a scratch file
// and replaces the member with it.
func (a *applier) rewrite(name string, fn func(lineNo int, line *lineReader, w io.Writer) error) error {
	src, err := os.Open(a.path(name))
	if err != nil {
		return &ioError{err}
	}
	defer src.Close()
	tmp, err := os.CreateTemp(a.scratch, "edit-*")
	if err != nil {
		return &ioError{err}
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w := bufio.NewWriterSize(tmp, 64<<10)
	lr := &lineReader{br: bufio.NewReaderSize(src, 64<<10)}
	for lineNo := 1; ; lineNo++ {
		more, err := lr.next()
		if err != nil {
			return &ioError{err}
		}
		if !more {
			break
		}
		if err := fn(lineNo, lr, w); err != nil {
			return err
		}
		if !lr.nl {
			return cdiffErrorf("%s does not end with a newline", name)
		}
	}
	if err := w.Flush(); err != nil {
		return &ioError{err}
	}
	if err := tmp.Close(); err != nil {
		return &ioError{err}
	}
	if err := os.Rename(tmp.Name(), a.path(name)); err != nil {
		return &ioError{err}
	}
	return nil
}

// lineReader walks a member's lines without holding a whole line: the
// consumer either copies the line through, skips it, or checks its prefix
// (a prefix is at most one script line long).
type lineReader struct {
	br   *bufio.Reader
	head []byte // the line's first fragment (at least 64 KiB or up to '\n')
	full bool   // head is the whole line
	done bool   // the line was consumed
	nl   bool   // the line ended with '\n'
}

// next starts the next line; false at end of input.
func (l *lineReader) next() (bool, error) {
	if !l.done && l.head != nil {
		if err := l.skip(); err != nil {
			return false, err
		}
	}
	frag, err := l.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		l.full = false
	case err == io.EOF:
		if len(frag) == 0 {
			return false, nil
		}
		l.full = true
	case err != nil:
		return false, err
	default:
		l.full = true
	}
	l.head = append(l.head[:0], frag...)
	l.done = false
	l.nl = l.full && len(frag) > 0 && frag[len(frag)-1] == '\n'
	return true, nil
}

func (l *lineReader) hasPrefix(p []byte) bool {
	line := bytes.TrimSuffix(l.head, []byte("\n"))
	if len(p) <= len(line) {
		return bytes.HasPrefix(line, p)
	}
	if l.full {
		return false
	}
	// A prefix longer than the buffered fragment: compare what follows
	// without consuming it.
	more, _ := l.br.Peek(len(p) - len(line))
	if i := bytes.IndexByte(more, '\n'); i >= 0 {
		more = more[:i]
	}
	return bytes.HasPrefix(append(append([]byte{}, line...), more...), p)
}

// copyTo writes the whole line (with its newline) to w.
func (l *lineReader) copyTo(w io.Writer) error {
	if _, err := w.Write(l.head); err != nil {
		return err
	}
	return l.rest(w)
}

// skip consumes the line without writing it.
func (l *lineReader) skip() error { return l.rest(io.Discard) }

func (l *lineReader) rest(w io.Writer) error {
	l.done = true
	for !l.full {
		frag, err := l.br.ReadSlice('\n')
		if _, werr := w.Write(frag); werr != nil {
			return werr
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			l.full, l.nl = true, false
		case err != nil:
			return err
		default:
			l.full, l.nl = true, true
		}
	}
	return nil
}
