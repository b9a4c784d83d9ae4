package cvd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// A deliberately small tar reader: ClamAV's own loader (libclamav/cvd.c)
// understands only regular-file entries with a name and an octal size, so
// everything else (directories, links, devices, pax or GNU extension headers)
// is refused rather than interpreted. archive/tar would accept, and resolve,
// far more than a database may contain.

const tarBlock = 512

// maxTarTrailer bounds the zero padding accepted after the end-of-archive
// marker (tar writers pad to at most a 10 KiB record; we allow 1 MiB).
const maxTarTrailer = 1 << 20

// tarError is an unsafe or corrupt archive; callers report it as CheckArchive.
type tarError struct{ msg string }

func (e *tarError) Error() string { return e.msg }

func tarErrorf(format string, a ...any) error { return &tarError{fmt.Sprintf(format, a...)} }

// tarHeader is one parsed entry header.
type tarHeader struct {
	Name string
	Size int64
}

// tarReader reads entries of a database tar stream.
type tarReader struct {
	r       io.Reader
	lim     Limits
	block   [tarBlock]byte
	remain  int64 // bytes of the current entry not yet read
	pad     int64 // padding after the current entry
	entries int
	total   int64 // bytes consumed from r, for the MaxBytes bound
	done    bool
}

func newTarReader(r io.Reader, lim Limits) *tarReader {
	return &tarReader{r: r, lim: lim.withDefaults()}
}

// Next skips the rest of the current entry and returns the next header, or
// io.EOF at the end of the archive. The end is either EOF exactly at an
// entry boundary (sigtool's CVDs have no end marker) or a zero block,
// optionally followed by more zeros.
func (t *tarReader) Next() (*tarHeader, error) {
	if t.done {
		return nil, io.EOF
	}
	if t.remain+t.pad > 0 {
		if _, err := io.CopyN(io.Discard, t, t.remain); err != nil {
			return nil, err
		}
		if err := t.skipPad(); err != nil {
			return nil, err
		}
	}
	n, err := io.ReadFull(t.r, t.block[:])
	t.total += int64(n)
	switch {
	case err == io.EOF:
		t.done = true
		return nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return nil, tarErrorf("archive truncated inside an entry header")
	case err != nil:
		return nil, err
	}
	if t.block[0] == 0 {
		if !isZero(t.block[:]) {
			return nil, tarErrorf("entry %d has an empty name", t.entries+1)
		}
		t.done = true
		return nil, t.drainTrailer()
	}
	h, err := parseTarHeader(&t.block)
	if err != nil {
		return nil, err
	}
	t.entries++
	if t.entries > t.lim.MaxFiles {
		return nil, tarErrorf("more than %d entries", t.lim.MaxFiles)
	}
	if h.Size > t.lim.MaxFileBytes {
		return nil, tarErrorf("entry %s is %d bytes, more than the limit of %d", h.Name, h.Size, t.lim.MaxFileBytes)
	}
	if t.total+h.Size > t.lim.MaxBytes {
		return nil, tarErrorf("archive is larger than the limit of %d bytes", t.lim.MaxBytes)
	}
	t.remain = h.Size
	t.pad = (tarBlock - h.Size%tarBlock) % tarBlock
	return h, nil
}

// Read reads the current entry's content.
func (t *tarReader) Read(p []byte) (int, error) {
	if t.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > t.remain {
		p = p[:t.remain]
	}
	n, err := t.r.Read(p)
	t.remain -= int64(n)
	t.total += int64(n)
	if err == io.EOF {
		if t.remain > 0 {
			return n, tarErrorf("archive truncated: entry ends %d bytes early", t.remain)
		}
		err = nil
	}
	if err == nil && t.remain == 0 {
		if perr := t.skipPad(); perr != nil {
			return n, perr
		}
	}
	return n, err
}

func (t *tarReader) skipPad() error {
	if t.pad == 0 {
		return nil
	}
	var buf [tarBlock]byte
	n, err := io.ReadFull(t.r, buf[:t.pad])
	t.total += int64(n)
	t.pad = 0
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		// sigtool and freshclam always pad; a stream ending inside the
		// padding was cut short.
		return tarErrorf("archive truncated inside the padding of an entry")
	}
	if err != nil {
		return err
	}
	if !isZero(buf[:n]) {
		return tarErrorf("non-zero bytes in the padding after an entry")
	}
	return nil
}

// drainTrailer reads what follows the end-of-archive marker: only zeros, and
// not too many of them.
func (t *tarReader) drainTrailer() error {
	var buf [8 << 10]byte
	var n int64
	for {
		k, err := t.r.Read(buf[:])
		n += int64(k)
		if !isZero(buf[:k]) {
			return tarErrorf("data after the end-of-archive marker")
		}
		if n > maxTarTrailer {
			return tarErrorf("more than %d bytes after the end-of-archive marker", maxTarTrailer)
		}
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// parseTarHeader validates one header block: checksum, a plain member name,
// a regular-file type flag and an octal size.
func parseTarHeader(b *[tarBlock]byte) (*tarHeader, error) {
	nameField := b[0:100]
	name := string(nameField)
	if i := bytes.IndexByte(nameField, 0); i >= 0 {
		name = string(nameField[:i])
		if !isZero(nameField[i:]) {
			return nil, tarErrorf("entry name %q is followed by hidden bytes", name)
		}
	}
	if err := checkTarChecksum(b); err != nil {
		return nil, tarErrorf("entry %q: %v", clip(name), err)
	}
	switch typ := b[156]; typ {
	case '0', 0:
	case '1':
		return nil, tarErrorf("entry %q is a hard link", clip(name))
	case '2':
		return nil, tarErrorf("entry %q is a symbolic link", clip(name))
	case '3', '4':
		return nil, tarErrorf("entry %q is a device", clip(name))
	case '5':
		return nil, tarErrorf("entry %q is a directory", clip(name))
	case '6':
		return nil, tarErrorf("entry %q is a FIFO", clip(name))
	default:
		return nil, tarErrorf("entry %q has type %q, not a regular file", clip(name), typ)
	}
	if !isZero(b[157:257]) {
		return nil, tarErrorf("entry %q has a link target", clip(name))
	}
	// A ustar prefix would be joined to the name by other tar readers.
	if bytes.Equal(b[257:262], []byte("ustar")) && !isZero(b[345:500]) {
		return nil, tarErrorf("entry %q has a ustar path prefix", clip(name))
	}
	switch {
	case name == "":
		return nil, tarErrorf("entry has an empty name")
	case name[0] == '/':
		return nil, tarErrorf("entry %q has an absolute path", clip(name))
	case name == ".." || bytes.Contains([]byte(name), []byte("../")) || bytes.HasSuffix([]byte(name), []byte("/..")):
		return nil, tarErrorf("entry %q climbs out of the archive (..)", clip(name))
	case bytes.IndexByte([]byte(name), '/') >= 0:
		return nil, tarErrorf("entry %q is not a plain file name (contains /)", clip(name))
	case !isPlainName(name):
		return nil, tarErrorf("entry %q is not a plain file name", clip(name))
	}
	size, err := parseOctal(b[124:136])
	if err != nil {
		return nil, tarErrorf("entry %q: size field: %v", clip(name), err)
	}
	return &tarHeader{Name: name, Size: size}, nil
}

// parseOctal parses a NUL- or space-terminated octal number; base-256
// (GNU binary) sizes are refused: no database member needs 8 GiB.
func parseOctal(f []byte) (int64, error) {
	if f[0]&0x80 != 0 {
		return 0, errors.New("binary (base-256) size")
	}
	s := bytes.TrimLeft(f, " ")
	if i := bytes.IndexAny(s, "\x00 "); i >= 0 {
		if !isZero(bytes.ReplaceAll(s[i:], []byte(" "), nil)) {
			return 0, errors.New("garbage after the number")
		}
		s = s[:i]
	}
	if len(s) == 0 {
		return 0, errors.New("empty")
	}
	if len(bytes.Trim(s, "01234567")) != 0 {
		return 0, fmt.Errorf("%q is not an octal number", s)
	}
	v, err := strconv.ParseInt(string(s), 8, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an octal number", s)
	}
	return v, nil
}

func checkTarChecksum(b *[tarBlock]byte) error {
	want, err := parseOctal(b[148:156])
	if err != nil {
		return fmt.Errorf("checksum field: %v", err)
	}
	var unsigned, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	if want != unsigned && want != signed {
		return errors.New("header checksum mismatch")
	}
	return nil
}

// tarWriter writes database entries in the form freshclam writes them
// (shared/tar.c): name, mode, owner 0, size, mtime, checksum, type '0',
// ustar magic. No end-of-archive marker is required by ClamAV; we write one
// anyway so that ordinary tar tools read the body cleanly.
type tarWriter struct {
	w     io.Writer
	mtime int64
}

func (tw *tarWriter) header(name string, size int64, typ byte) error {
	var b [tarBlock]byte
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", tw.mtime))
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	_, err := tw.w.Write(b[:])
	return err
}

// add writes one regular-file entry with content from r (exactly size bytes).
func (tw *tarWriter) add(name string, size int64, r io.Reader) error {
	if err := tw.header(name, size, '0'); err != nil {
		return err
	}
	n, err := io.CopyN(tw.w, r, size)
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("%s: got %d bytes, want %d (file changed while reading?)", name, n, size)
		}
		return err
	}
	return tw.pad(size)
}

func (tw *tarWriter) pad(size int64) error {
	if p := (tarBlock - size%tarBlock) % tarBlock; p > 0 {
		_, err := tw.w.Write(make([]byte, p))
		return err
	}
	return nil
}

// close writes the end-of-archive marker (two zero blocks).
func (tw *tarWriter) close() error {
	_, err := tw.w.Write(make([]byte, 2*tarBlock))
	return err
}
