package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/avfleet/avfleet/internal/cvd"
)

// Bounds on what upstream can make the mirror write: the largest official
// database (main.cvd) is a few hundred MB, a .sign a few KB.
const (
	maxFileBytes = 2 << 30
	maxSignBytes = 1 << 20
)

// headerResult is what the Range header check learned.
type headerResult struct {
	notModified bool
	version     uint
	size        int64 // of the whole CVD, -1 if upstream did not say
}

// headerCheck asks for the first 512 bytes of /{db}.cvd, with
// If-Modified-Since the build time of what the mirror holds, as freshclam
// does without DNS: 304 means nothing newer, otherwise the header names the
// version. Nothing of it goes to incoming/.
func (s *Syncer) headerCheck(ctx context.Context, base, db string, held Held) (headerResult, error) {
	res := headerResult{size: -1}
	h := http.Header{"Range": {"bytes=0-" + strconv.Itoa(cvd.HeaderSize-1)}}
	if held.Version > 0 && !held.BuildTime.IsZero() {
		h.Set("If-Modified-Since", held.BuildTime.UTC().Format(http.TimeFormat))
	}
	r, err := s.c.get(ctx, base, db+".cvd", "header", h)
	if err != nil {
		return res, err
	}
	defer r.Close()
	u := r.Request.URL.Redacted()
	if r.StatusCode == http.StatusNotModified {
		res.notModified = true
		return res, nil
	}
	buf := make([]byte, cvd.HeaderSize)
	n, err := io.ReadFull(r.Body, buf)
	if err != nil {
		return res, fmt.Errorf("header check %s: got %d bytes, want %d (%v): not a CVD (starts with %q)", u, n, cvd.HeaderSize, err, clip(string(buf[:n])))
	}
	hdr, err := cvd.ParseHeader(buf)
	if err != nil {
		return res, fmt.Errorf("header check %s: not a CVD header: %v (starts with %q)", u, err, clip(string(buf)))
	}
	res.version = hdr.Version
	switch r.StatusCode {
	case http.StatusPartialContent:
		res.size = rangeTotal(r.Header.Get("Content-Range"))
	case http.StatusOK:
		res.size = r.ContentLength
	}
	return res, nil
}

// rangeTotal reads the complete length from "bytes 0-511/8394"; -1 if absent.
func rangeTotal(v string) int64 {
	i := strings.LastIndexByte(v, '/')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v[i+1:]), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// peekVersion reads the version from a CVD header, for naming its .sign.
func peekVersion(hdr []byte) (uint, bool) {
	if len(hdr) < cvd.HeaderSize {
		return 0, false
	}
	h, err := cvd.ParseHeader(hdr[:cvd.HeaderSize])
	if err != nil {
		return 0, false
	}
	return h.Version, true
}

// fetched is one downloaded and ingested file.
type fetched struct {
	bytes       int64
	notModified bool
	ing         Ingested
}

// fetchIngest downloads base/name into incoming/name (its .sign first, when
// upstream has one, so the pipeline never sees the file without it) and
// ingests it. signFor names the .sign from the first bytes of the file ("" =
// none); want is the version expected (0: from the header). Whatever the body
// is, it goes to the verifier: an HTML error page is rejected there and
// recorded like any bad file.
func (s *Syncer) fetchIngest(ctx context.Context, base, name, kind string, h http.Header, signFor func([]byte) string, want uint) (fetched, error) {
	var f fetched
	r, err := s.c.get(ctx, base, name, kind, h)
	if err != nil {
		return f, err
	}
	defer r.Close()
	u := r.Request.URL.Redacted()
	switch r.StatusCode {
	case http.StatusNotModified:
		f.notModified = true
		return f, nil
	case http.StatusOK:
	default:
		return f, fmt.Errorf("%s answered %s to a request for the whole file", u, r.Status)
	}
	if r.ContentLength > maxFileBytes {
		return f, fmt.Errorf("%s is %d bytes, more than the %d a database may be", u, r.ContentLength, int64(maxFileBytes))
	}
	head := make([]byte, cvd.HeaderSize)
	n, err := io.ReadFull(r.Body, head)
	head = head[:n]
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return f, fmt.Errorf("download %s: %w", u, err)
	}
	if want == 0 {
		want, _ = peekVersion(head)
	}

	signName := ""
	if signFor != nil {
		signName = signFor(head)
	}
	var sign []byte
	if signName != "" {
		if sign, err = s.fetchSign(ctx, base, signName); err != nil {
			return f, err
		}
	}
	if sign != nil {
		if err := s.sink.PutIncoming(name+".sign", bytes.NewReader(sign)); err != nil {
			return f, err
		}
	} else if err := s.sink.RemoveIncoming(name + ".sign"); err != nil {
		// A stale .sign would travel with this file and could fail it.
		return f, err
	}
	body := &limitReader{r: io.MultiReader(bytes.NewReader(head), r.Body), left: maxFileBytes, url: u}
	if err := s.sink.PutIncoming(name, body); err != nil {
		f.bytes = body.n
		if sign != nil {
			_ = s.sink.RemoveIncoming(name + ".sign")
		}
		return f, fmt.Errorf("download %s: %w", u, err)
	}
	f.bytes = body.n
	f.ing, err = s.ingest(ctx, name, dbOf(name), want)
	if err != nil {
		return f, fmt.Errorf("verify %s from %s: %w", name, u, err)
	}
	if f.ing.Outcome == Rejected {
		s.log.Warn("upstream file rejected by the verifier", "file", name, "upstream", base, "check", f.ing.Check, "reason", f.ing.Reason)
	}
	return f, nil
}

// ingest runs the pipeline on incoming/name. If the daemon's incoming/ scan
// took the file first (it runs the same pipeline), the outcome is read back
// from what the mirror now holds.
func (s *Syncer) ingest(ctx context.Context, name, db string, want uint) (Ingested, error) {
	ing, err := s.sink.Ingest(ctx, name, "sync")
	if !errors.Is(err, os.ErrNotExist) {
		return ing, err
	}
	held, herr := s.sink.Held(db)
	if herr != nil {
		return Ingested{}, herr
	}
	if want > 0 && held.Version >= want {
		return Ingested{Outcome: Accepted, Version: want}, nil
	}
	return Ingested{Outcome: Rejected, Check: "unknown",
		Reason: "the daemon's incoming/ scan took the file first and did not accept it (see avfleet mirror status)"}, nil
}

// dbOf is the database a file name is for: daily-27480.cdiff, daily.cvd.
func dbOf(name string) string {
	name = strings.TrimSuffix(strings.TrimSuffix(name, ".cdiff"), ".cvd")
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.ParseUint(name[i+1:], 10, 32); err == nil {
			return name[:i]
		}
	}
	return name
}

// fetchSign downloads a ClamAV 1.5 .sign. Upstream may not have one (404,
// ClamAV before 1.5): that is not an error; the verifier and
// trust.require_sign decide what a missing .sign means.
func (s *Syncer) fetchSign(ctx context.Context, base, name string) ([]byte, error) {
	r, err := s.c.get(ctx, base, name, "sign", nil)
	var nf *notFoundError
	var ce *cooldownError
	switch {
	case errors.As(err, &nf):
		s.log.Debug("upstream has no .sign", "file", name)
		return nil, nil
	case errors.As(err, &ce):
		return nil, err
	case err != nil:
		s.log.Warn("could not fetch .sign; continuing without it", "file", name, "err", err)
		return nil, nil
	}
	defer r.Close()
	if r.StatusCode != http.StatusOK {
		s.log.Warn("unexpected answer for .sign; continuing without it", "file", name, "status", r.Status)
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxSignBytes+1))
	if err != nil {
		s.log.Warn("could not fetch .sign; continuing without it", "file", name, "err", err)
		return nil, nil
	}
	if len(b) > maxSignBytes {
		s.log.Warn("upstream .sign is larger than 1 MiB; ignored", "file", name)
		return nil, nil
	}
	return b, nil
}

// limitReader fails (so nothing is renamed into incoming/) once more than
// left bytes arrive, and counts what it passed on.
type limitReader struct {
	r    io.Reader
	left int64
	n    int64
	url  string
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.left {
		return n, fmt.Errorf("%s is larger than %d bytes; refused", l.url, l.left)
	}
	return n, err
}
