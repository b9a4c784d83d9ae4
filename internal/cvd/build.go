package cvd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// DefaultFLevel is the f-level Build writes when none is given: 90 is
// ClamAV 0.99's, old enough for every engine in use and new enough for the
// wildcard hash sizes and logical signatures organisations write.
const DefaultFLevel = 90

// DefaultBuilder is the builder name Build writes when none is given.
const DefaultBuilder = "avfleet"

// BuildOptions describe a database built from signature files.
type BuildOptions struct {
	Name    string          // database name, e.g. "acme"
	Version uint            // database version
	FLevel  uint            // minimum f-level; 0 = DefaultFLevel
	Builder string          // builder name in the header; "" = DefaultBuilder
	Time    time.Time       // build time; zero = now
	Key     *rsa.PrivateKey // nil = unsigned CUD
	Files   []string        // signature files (.hdb .hsb .ndb .ldb .ign2 ...), stored under their base names
}

// member is one archive entry to write: in-memory data or a file on disk.
type member struct {
	name   string
	size   int64
	data   []byte
	path   string
	sha256 string // when set, the content written must have this hash
}

func (m member) open() (io.ReadCloser, error) {
	if m.path == "" {
		return io.NopCloser(bytes.NewReader(m.data)), nil
	}
	return os.Open(m.path)
}

// Build writes a CVD signed with o.Key (or a CUD when o.Key is nil) to w.
//
// A signed CVD carries both of ClamAV's signatures made with o.Key: the
// legacy header signature over the body MD5 and the .info DSIG
// (RSA-PSS/SHA-256). Verify accepts it when the public key is in
// Trust.Keys. clamd itself trusts only ClamAV's keys in a CVD, so install an
// organisation's database as a CUD (see Convert).
func Build(w io.Writer, o BuildOptions) error {
	members, hdr, err := planBuild(o)
	if err != nil {
		return err
	}
	header := func(sum []byte) ([]byte, error) {
		md := hex.EncodeToString(sum)
		if o.Key == nil {
			return encodeHeader(hdr.line(md, "X"))
		}
		return encodeHeader(hdr.line(md, signLegacy(o.Key, sum)))
	}
	if ws, ok := w.(io.WriteSeeker); ok {
		if _, err := ws.Seek(0, io.SeekCurrent); err == nil {
			return writeDBTo(ws, members, true, hdr.Time.Unix(), header)
		}
	}
	// Not seekable (a pipe): build in a temp file, then copy.
	tmp, err := os.CreateTemp("", "avfleet-build-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := writeDBTo(tmp, members, true, hdr.Time.Unix(), header); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err = io.Copy(w, tmp)
	return err
}

// planBuild validates o, hashes the files and makes the .info.
func planBuild(o BuildOptions) ([]member, Header, error) {
	var h Header
	if !isPlainName(o.Name) || strings.ContainsAny(o.Name, ".") {
		return nil, h, fmt.Errorf("database name %q: use letters, digits, '_' or '-'", o.Name)
	}
	if o.Version == 0 {
		return nil, h, errors.New("database version must be at least 1")
	}
	if len(o.Files) == 0 {
		return nil, h, errors.New("no signature files given")
	}
	if o.Builder == "" {
		o.Builder = DefaultBuilder
	}
	for _, c := range o.Builder {
		if c < 0x21 || c > 0x7e || c == ':' {
			return nil, h, fmt.Errorf("builder name %q: printable ASCII without spaces or ':' only", o.Builder)
		}
	}
	if len(o.Builder) > 64 {
		return nil, h, errors.New("builder name is longer than 64 characters")
	}
	if o.FLevel == 0 {
		o.FLevel = DefaultFLevel
	}
	if o.Time.IsZero() {
		o.Time = time.Now()
	}
	if o.Key != nil {
		if bits := o.Key.N.BitLen(); bits != KeyBits {
			return nil, h, fmt.Errorf("key is %d bits; cvd build needs a %d-bit RSA key (a larger key's signature does not fit ClamAV's 512-byte header)", bits, KeyBits)
		}
	}
	infoName := o.Name + ".info"
	var copying *member
	var files []File
	var members []member
	seen := map[string]bool{}
	var sigs uint
	for _, p := range o.Files {
		base := filepath.Base(p)
		switch {
		case !isPlainName(base):
			return nil, h, fmt.Errorf("%s: file name %q is not a plain database member name (letters, digits, . _ -)", p, base)
		case strings.HasSuffix(base, ".info"):
			return nil, h, fmt.Errorf("%s: .info files are made by cvd build, not given", p)
		case seen[base]:
			return nil, h, fmt.Errorf("%s: two files named %s", p, base)
		}
		seen[base] = true
		f, n, err := hashSigFile(p)
		if err != nil {
			return nil, h, err
		}
		f.Name = base
		m := member{name: base, size: f.Size, path: p, sha256: f.SHA256}
		if base == "COPYING" {
			copying = &m
			continue
		}
		sigs += n
		files = append(files, f)
		members = append(members, m)
	}
	if len(files) == 0 {
		return nil, h, errors.New("no signature files given (only COPYING)")
	}
	h = Header{
		Magic:     vdbMagic,
		BuildTime: o.Time.Format(buildTimeLayout),
		Version:   o.Version,
		Sigs:      sigs,
		FLevel:    o.FLevel,
		Builder:   o.Builder,
		Time:      o.Time.Truncate(time.Second).UTC(),
	}
	var sign func([]byte) (string, error)
	if o.Key != nil {
		sign = func(d []byte) (string, error) { return signPSS(o.Key, d) }
	}
	infoData, err := encodeInfo(h, files, sign)
	if err != nil {
		return nil, h, err
	}
	out := []member{{name: infoName, size: int64(len(infoData)), data: infoData}}
	if copying != nil {
		out = append([]member{*copying}, out...)
	}
	return append(out, members...), h, nil
}

// hashSigFile returns a file's size and SHA-256 and counts its signatures:
// lines that are neither empty nor comments, one per bytecode file, none in
// configuration and allow-list files (ClamAV's .info counts the same way).
func hashSigFile(path string) (File, uint, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return File{}, 0, err
	}
	if !st.Mode().IsRegular() {
		return File{}, 0, fmt.Errorf("%s is not a regular file", path)
	}
	hs := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(f, hs), 64<<10)
	var lines uint
	var size int64
	atStart := true
	for {
		b, err := br.ReadSlice('\n')
		size += int64(len(b))
		if len(b) > 0 && atStart && b[0] != '#' && b[0] != '\n' && !(b[0] == '\r' && len(b) > 1 && b[1] == '\n') {
			lines++
		}
		atStart = len(b) > 0 && b[len(b)-1] == '\n'
		if err == bufio.ErrBufferFull {
			atStart = false
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return File{}, 0, err
		}
	}
	if size != st.Size() {
		return File{}, 0, fmt.Errorf("%s changed while reading", path)
	}
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".cfg", ".ign", ".ign2", ".fp", ".sfp", ".ftm", ".info":
		lines = 0
	case ".cbc":
		lines = 1
	}
	return File{Size: size, SHA256: hex.EncodeToString(hs.Sum(nil))}, lines, nil
}

// writeDBTo writes a 512-byte placeholder, the body (gzipped tar or plain
// tar) of members, then seeks back to write the header made from the body
// MD5. The stream is left positioned after the body.
func writeDBTo(ws io.WriteSeeker, members []member, compress bool, mtime int64, header func(md5 []byte) ([]byte, error)) error {
	start, err := ws.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := ws.Write(bytes.Repeat([]byte{' '}, HeaderSize)); err != nil {
		return err
	}
	sum, err := writeBody(ws, members, compress, mtime)
	if err != nil {
		return err
	}
	end, err := ws.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	hb, err := header(sum)
	if err != nil {
		return err
	}
	if _, err := ws.Seek(start, io.SeekStart); err != nil {
		return err
	}
	if _, err := ws.Write(hb); err != nil {
		return err
	}
	_, err = ws.Seek(end, io.SeekStart)
	return err
}

// writeBody writes the members as a tar (gzipped when compress) and returns
// the MD5 of the bytes written.
func writeBody(w io.Writer, members []member, compress bool, mtime int64) ([]byte, error) {
	md := md5.New()
	out := bufio.NewWriterSize(io.MultiWriter(w, md), 256<<10)
	var tw io.Writer = out
	var zw *gzip.Writer
	if compress {
		zw = gzip.NewWriter(out)
		tw = zw
	}
	t := &tarWriter{w: tw, mtime: mtime}
	for _, m := range members {
		r, err := m.open()
		if err != nil {
			return nil, err
		}
		hs := sha256.New()
		err = t.add(m.name, m.size, io.TeeReader(r, hs))
		r.Close()
		if err != nil {
			return nil, err
		}
		// The .info was made from an earlier read: a file edited while
		// the database is built must not end up with a wrong hash.
		if m.sha256 != "" && hex.EncodeToString(hs.Sum(nil)) != m.sha256 {
			return nil, fmt.Errorf("%s changed while the database was being built", m.path)
		}
	}
	if err := t.close(); err != nil {
		return nil, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	if err := out.Flush(); err != nil {
		return nil, err
	}
	return md.Sum(nil), nil
}

// writeDBFile writes a database to a new file at path (which must not
// exist) and syncs it.
func writeDBFile(path string, members []member, compress bool, mtime int64, header func([]byte) ([]byte, error)) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := writeDBTo(f, members, compress, mtime, header); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// Convert rewrites the verified database src as dst in the given kind (CUD or
// CLD) so clamd loads it: clamd only trusts ClamAV's key in CVD/CLD, so an
// organisation's database is installed as a CUD.
//
// A CUD is a gzipped tar whose .info has no DSIG line (clamd refuses a CUD
// whose .info has one: "Malformed database"); its header carries the body
// MD5 and "X" as signature. A CLD is written as freshclam writes it: the
// .info first line as header, then an uncompressed tar starting with
// COPYING, the .info keeping its DSIG. The write is atomic (temp file in
// dst's directory, fsync, rename).
func Convert(src, dst string, to Kind) error {
	if to != KindCUD && to != KindCLD {
		return fmt.Errorf("convert %s: cannot write kind %q (want cud or cld)", src, to)
	}
	work, err := os.MkdirTemp(filepath.Dir(dst), ".avfleet-convert-*")
	if err != nil {
		return fmt.Errorf("convert %s: %w", src, err)
	}
	defer os.RemoveAll(work)
	ex, err := extract(src, filepath.Join(work, "db"), &Trust{}, true)
	if err != nil {
		return err
	}
	if ex.kind == KindCDiff {
		return verr(src, CheckFormat, nil, "is a cdiff; convert needs a database")
	}
	tmp := filepath.Join(work, "out")
	if err := ex.write(tmp, to); err != nil {
		return fmt.Errorf("convert %s: write %s: %w", src, to, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("convert %s: %w", src, err)
	}
	return fsutil.SyncDir(filepath.Dir(dst))
}

// extracted is a database unpacked into a directory, in archive order.
type extracted struct {
	dir      string
	kind     Kind
	order    []string // member names as they are now
	infoName string
	header   Header
	sha256   string // of the source file
}

// extract unpacks the database at path into dir (created), checking archive
// safety and the .info file list on the way; with structural it makes no
// trust decision (the caller verified the file).
func extract(path, dir string, t *Trust, structural bool) (*extracted, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("extract %s: %w", path, err)
	}
	info, res, err := verifyPath(path, t, verifyOpts{structural: structural, sink: dirSink(dir)})
	if err != nil {
		return nil, err
	}
	if info.Kind == KindCDiff {
		return &extracted{kind: KindCDiff}, nil
	}
	ex := &extracted{dir: dir, kind: info.Kind, infoName: res.InfoName, header: info.Header, sha256: info.SHA256}
	for _, e := range res.Entries {
		ex.order = append(ex.order, e.Name)
	}
	return ex, nil
}

// dirSink writes each member to a new file in dir.
func dirSink(dir string) entrySink {
	return func(name string, _ int64) (io.Writer, func() error, error) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, err
		}
		bw := bufio.NewWriterSize(f, 64<<10)
		return bw, func() error {
			if err := bw.Flush(); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}, nil
	}
}

// write writes the unpacked database as a CLD or CUD at path.
func (ex *extracted) write(path string, to Kind) error {
	infoPath := filepath.Join(ex.dir, ex.infoName)
	raw, err := readBounded(infoPath, maxInfoBytes)
	if err != nil {
		return fmt.Errorf("read %s: %w", ex.infoName, err)
	}
	inf, err := parseInfo(raw)
	if err != nil {
		return verr(ex.infoName, CheckInfo, err, "%v", err)
	}
	var members []member
	add := func(name string) error {
		st, err := os.Stat(filepath.Join(ex.dir, name))
		if err != nil {
			return err
		}
		members = append(members, member{name: name, size: st.Size(), path: filepath.Join(ex.dir, name)})
		return nil
	}
	// freshclam's order: COPYING first (clamd tells a plain tar from a
	// gzipped one by the body starting with "COPYING"), then the rest.
	if _, err := os.Stat(filepath.Join(ex.dir, "COPYING")); err == nil {
		if err := add("COPYING"); err != nil {
			return err
		}
	}
	if to == KindCUD {
		d := inf.withoutDSig(raw)
		members = append(members, member{name: ex.infoName, size: int64(len(d)), data: d})
	} else if err := add(ex.infoName); err != nil {
		return err
	}
	for _, n := range ex.order {
		if n == "COPYING" || n == ex.infoName {
			continue
		}
		if err := add(n); err != nil {
			return err
		}
	}
	mtime := inf.Header.Time.Unix()
	if to == KindCLD {
		line, _, _ := strings.Cut(string(raw), "\n")
		return writeDBFile(path, members, false, mtime, func([]byte) ([]byte, error) { return encodeHeader(line) })
	}
	return writeDBFile(path, members, true, mtime, func(sum []byte) ([]byte, error) {
		return encodeHeader(inf.Header.line(hex.EncodeToString(sum), "X"))
	})
}
