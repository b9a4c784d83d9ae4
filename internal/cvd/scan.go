package cvd

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Defaults for Limits (see api.go).
const (
	defaultMaxFiles     = 1000
	defaultMaxFileBytes = 4 << 30
	defaultMaxBytes     = 8 << 30
	defaultMaxRatio     = 100
	// ratioSlack lets small members compress far better than MaxRatio:
	// the ratio applies only past the first MiB of output.
	ratioSlack = 1 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = defaultMaxFiles
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = defaultMaxFileBytes
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = defaultMaxBytes
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = defaultMaxRatio
	}
	return l
}

// Pipeline geometry: 4 buffers of 256 KiB per pipe keep both cores busy
// while bounding the buffers to 2 MiB per pipe.
const (
	pipeBufs  = 4
	pipeChunk = 256 << 10
)

// scanResult is everything one streaming pass over a database learns.
type scanResult struct {
	Size     int64    // bytes of the whole file
	SHA256   [32]byte // of the whole file
	MD5      [16]byte // of the body (after the 512-byte header)
	BodyLen  int64
	Gzip     bool
	Entries  []File // tar members in archive order
	InfoName string // the member ending in .info
	InfoRaw  []byte // its content (bounded by maxInfoBytes)
	ReadErr  error  // reading the file failed
	BodyErr  error  // the body is not a safe, well-formed tar(.gz)
}

// entrySink receives each member's content while it is verified (used to
// extract a database for patching or conversion). The returned writer's
// close function is called after the member's last byte.
type entrySink func(name string, size int64) (io.Writer, func() error, error)

// ioError marks an I/O failure (reported as CheckIO, exit status 2).
type ioError struct{ err error }

func (e *ioError) Error() string { return e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

var errReadAborted = errors.New("reading the file failed")

// sinkWriter marks write errors of an entrySink as I/O errors, so a full
// disk is not reported as a corrupt archive.
type sinkWriter struct{ w io.Writer }

func (s sinkWriter) Write(b []byte) (int, error) {
	n, err := s.w.Write(b)
	if err != nil {
		err = &ioError{err}
	}
	return n, err
}

// scanBody reads a database body from r in one pass: the calling goroutine
// reads and computes the body MD5 and whole-file SHA-256, a second inflates,
// a third walks the tar and hashes each member. head is the 512-byte header
// already read (it is part of the whole-file SHA-256).
func scanBody(r io.Reader, head []byte, lim Limits, sink entrySink) *scanResult {
	lim = lim.withDefaults()
	res := &scanResult{Size: int64(len(head))}
	whole := sha256.New()
	whole.Write(head)
	md := md5.New()

	p1 := newChunkPipe(pipeBufs)
	buf := p1.get()
	n, rerr := readChunk(r, buf)
	res.Gzip = n >= 2 && buf[0] == 0x1f && buf[1] == 0x8b

	var wg sync.WaitGroup
	var inflateErr, tarErr error
	tarIn, tarPipe := p1, p1
	defer p1.recycle() // after wg.Wait: every stage is done with the buffers
	if res.Gzip {
		p2 := newChunkPipe(pipeBufs)
		defer p2.recycle()
		tarIn, tarPipe = p2, p2
		wg.Add(1)
		go func() {
			defer wg.Done()
			inflateErr = inflateStage(p1, p2, lim)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tarErr = tarStage(tarIn, tarPipe, lim, sink, res)
	}()

	alive := true
	var spare []byte
	for {
		if n > 0 {
			md.Write(buf[:n])
			whole.Write(buf[:n])
			res.BodyLen += int64(n)
			if alive {
				alive = p1.put(buf[:n])
			}
		} else if alive {
			p1.release(buf)
		}
		if rerr != nil {
			break
		}
		if alive {
			if buf = p1.get(); buf == nil {
				alive = false
			}
		}
		if !alive {
			// The archive stages stopped (their error is reported); keep
			// hashing so the body MD5 can still be compared.
			if spare == nil {
				spare = make([]byte, pipeChunk)
			}
			buf = spare
		}
		n, rerr = readChunk(r, buf)
	}
	if rerr != io.EOF {
		res.ReadErr = rerr
		p1.closeWrite(errReadAborted)
	} else {
		p1.closeWrite(nil)
	}
	wg.Wait()
	res.Size += res.BodyLen
	copy(res.SHA256[:], whole.Sum(nil))
	copy(res.MD5[:], md.Sum(nil))
	switch {
	case tarErr != nil:
		res.BodyErr = tarErr
	case inflateErr != nil:
		res.BodyErr = inflateErr
	}
	return res
}

// readChunk fills buf as far as r allows; err is io.EOF at the end.
func readChunk(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

func inflateStage(in, out *chunkPipe, lim Limits) error {
	defer in.closeRead()
	cr := &countingReader{r: in}
	zr, err := gzip.NewReader(cr)
	if err != nil {
		err = gzipError(err)
		out.closeWrite(err)
		return err
	}
	var produced int64
	for {
		buf := out.get()
		if buf == nil {
			return nil // the tar stage stopped and reports why
		}
		n, err := fill(zr, buf)
		produced += int64(n)
		if produced > lim.MaxRatio*cr.n+ratioSlack {
			err := tarErrorf("gzip bomb: %d bytes inflated from %d (more than %dx)", produced, cr.n, lim.MaxRatio)
			out.release(buf)
			out.closeWrite(err)
			return err
		}
		if !out.put(buf[:n]) {
			return nil
		}
		if err == io.EOF {
			out.closeWrite(nil)
			return nil
		}
		if err != nil {
			err = gzipError(err)
			out.closeWrite(err)
			return err
		}
	}
}

func gzipError(err error) error {
	switch {
	case errors.Is(err, errReadAborted):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return tarErrorf("gzip stream truncated")
	case errors.Is(err, gzip.ErrHeader):
		return tarErrorf("gzip: invalid header (not gzip, or data after the compressed stream)")
	}
	return tarErrorf("gzip: %s", strings.TrimPrefix(err.Error(), "gzip: "))
}

// fill reads from r until buf is full or r fails; unlike io.ReadFull it
// reports the reader's own io.ErrUnexpectedEOF (a truncated gzip stream)
// as such.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func tarStage(in io.Reader, pipe *chunkPipe, lim Limits, sink entrySink, res *scanResult) error {
	defer pipe.closeRead()
	tr := newTarReader(in, lim)
	buf := make([]byte, 64<<10)
	seen := make(map[string]bool)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if seen[h.Name] {
			return tarErrorf("entry %s appears twice", h.Name)
		}
		seen[h.Name] = true
		hs := sha256.New()
		var w io.Writer = hs
		var info *bytes.Buffer
		isInfo := strings.HasSuffix(h.Name, ".info")
		if isInfo {
			if res.InfoName != "" {
				return infoErrorf("archive holds two .info files (%s and %s)", res.InfoName, h.Name)
			}
			if h.Size > maxInfoBytes {
				return infoErrorf("%s is %d bytes, more than %d", h.Name, h.Size, maxInfoBytes)
			}
			info = bytes.NewBuffer(make([]byte, 0, h.Size))
			w = io.MultiWriter(hs, info)
		}
		var done func() error
		if sink != nil {
			sw, closeFn, err := sink(h.Name, h.Size)
			if err != nil {
				return &ioError{err}
			}
			w = io.MultiWriter(w, sinkWriter{sw})
			done = closeFn
		}
		if _, err := io.CopyBuffer(w, tr, buf); err != nil {
			if done != nil {
				done()
			}
			return err
		}
		if done != nil {
			if err := done(); err != nil {
				return &ioError{err}
			}
		}
		res.Entries = append(res.Entries, File{Name: h.Name, Size: h.Size, SHA256: fmt.Sprintf("%x", hs.Sum(nil))})
		if isInfo {
			res.InfoName, res.InfoRaw = h.Name, info.Bytes()
		}
	}
}
