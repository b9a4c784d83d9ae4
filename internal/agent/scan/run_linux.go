package scan

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avfleet/avfleet/internal/report"
)

type fileID struct{ dev, ino uint64 }

// run is one scan in progress.
type run struct {
	s      *Scanner
	opts   Options
	ctx    context.Context
	cancel context.CancelCauseFunc
	cache  *cacheRun
	jobs   chan *job // walker -> workers
	pipe   *pipe     // instead of jobs and workers: FILDES pipelined by the walker

	// skipDirs are directories never entered (the quarantine, the overlay
	// layers of containers scanned through their roots). Written before the
	// walk starts, read-only after.
	skipDirs map[fileID]string

	linksMu sync.Mutex
	links   map[fileID]struct{} // files with several names, scanned once

	files, bytes, unchanged, detections, containers atomic.Int64
	doneFiles, doneBytes, skipped, errs             atomic.Int64
	totalFiles, totalBytes                          atomic.Int64
	current                                         atomic.Pointer[string]
	connFailures                                    atomic.Int32
	start                                           time.Time

	reasonsMu sync.Mutex
	reasons   map[string]int64

	fatalOnce sync.Once
	fatal     error

	evMu sync.Mutex
}

// maxConnFailures is how many clamd connection failures in a row end a scan.
const maxConnFailures = 10

// clamdWait is how long a worker keeps trying to reach clamd (a supervised
// clamd being restarted) before the scan fails.
const clamdWait = 15 * time.Second

func (s *Scanner) run(parent context.Context, opts Options) (report.ScanSummary, error) {
	log := s.cfg.Logger
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	r := &run{
		s: s, opts: opts, ctx: ctx, cancel: cancel,
		skipDirs: map[fileID]string{},
		links:    map[fileID]struct{}{},
		reasons:  map[string]int64{},
		start:    time.Now(),
	}
	r.totalFiles.Store(-1)
	r.totalBytes.Store(-1)
	sum := report.ScanSummary{
		ScanID: opts.ScanID, Node: s.cfg.Node, Trigger: opts.Trigger, Start: r.start,
		Paths: opts.Paths, DBVersions: opts.DBVersions,
	}

	if q := s.cfg.QuarantineDir; q != "" {
		var st unix.Stat_t
		if unix.Stat(q, &st) == nil {
			r.skipDirs[fileID{st.Dev, st.Ino}] = ReasonQuarantine
		}
	}
	if s.cache != nil {
		if opts.Definitions == "" {
			log.Info("incremental scan off for this scan: the loaded definitions are not known")
		} else if c, err := s.cache.begin(ctx, opts.Definitions, s.cfg.Workers); err != nil {
			log.Warn("incremental scan off for this scan: scan cache unusable", "err", err)
		} else {
			r.cache = c
		}
	}

	var targets []target
	if opts.Containers {
		ctrs, err := DiscoverContainers("/proc")
		if err != nil {
			log.Warn("containers not scanned", "err", err)
		}
		for _, c := range ctrs {
			defer c.Close()
			targets = append(targets, target{path: c.Path, ctr: c})
			for _, l := range c.Layers {
				var st unix.Stat_t
				if unix.Stat(l, &st) == nil {
					r.skipDirs[fileID{st.Dev, st.Ino}] = ReasonContainerLayer
				}
			}
			log.Debug("container found", "container", c.ID, "pid", c.PID, "layers", len(c.Layers))
		}
	}
	for _, p := range opts.Paths {
		targets = append(targets, target{path: filepath.Clean(p)})
	}

	var workers, counter sync.WaitGroup
	if pe, ok := s.cfg.Engine.(pipelineEngine); ok && pe.pipelined() {
		// The walker's goroutine opens, sends and collects answers itself
		// (see pipe_linux.go): no hand-offs between goroutines per file.
		r.pipe = &pipe{r: r, eng: pe, limit: pipeDepth(s.cfg.Workers), inflight: map[int]*prepared{}}
	} else {
		r.jobs = make(chan *job, 8*s.cfg.Workers)
		// One worker more than clamd has threads for us: while each thread
		// scans a file, one more request waits in clamd's queue, so a thread
		// that finishes starts on it at once instead of idling while the
		// scanner answers and opens the next file.
		for range s.cfg.Workers + 1 {
			workers.Go(r.worker)
		}
	}
	if opts.Count {
		counter.Go(func() {
			w := newWalker(r, true)
			for _, t := range targets {
				w.walk(t)
			}
			if ctx.Err() == nil {
				r.totalBytes.Store(w.nBytes)
				r.totalFiles.Store(w.nFiles)
			}
		})
	}
	stopProgress := r.startProgress()
	w := newWalker(r, false)
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		if t.ctr != nil {
			r.containers.Add(1)
		}
		w.walk(t)
	}
	if r.pipe != nil {
		r.pipe.drain()
	} else {
		close(r.jobs)
	}
	workers.Wait()
	counter.Wait()
	if r.cache != nil {
		if err := r.cache.close(); err != nil {
			log.Warn("scan cache: clean results not saved; they will be scanned again", "err", err)
		}
	}
	stopProgress()

	sum.End = time.Now()
	sum.Duration = sum.End.Sub(sum.Start)
	sum.Files, sum.Bytes = r.files.Load(), r.bytes.Load()
	sum.Skipped, sum.Errors = r.skipped.Load(), r.errs.Load()
	sum.Detections, sum.IncrementalHits = r.detections.Load(), r.unchanged.Load()
	sum.Containers = r.containers.Load()
	r.reasonsMu.Lock()
	sum.SkippedByReason = maps.Clone(r.reasons)
	r.reasonsMu.Unlock()
	var err error
	switch {
	case r.fatal != nil:
		sum.Result, sum.Error, err = report.ResultError, r.fatal.Error(), r.fatal
	case parent.Err() != nil:
		sum.Result, sum.Error, err = report.ResultCancelled, "cancelled", parent.Err()
	case sum.Detections > 0:
		sum.Result = report.ResultInfected
	default:
		sum.Result = report.ResultClean
	}
	if s.cfg.Sink != nil {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
		s.cfg.Sink.Report(rctx, sum)
		rcancel()
	}
	return sum, err
}

// fail ends the scan with err.
func (r *run) fail(err error) {
	r.fatalOnce.Do(func() {
		r.fatal = err
		r.cancel(err)
	})
}

func (r *run) startProgress() (stop func()) {
	if r.opts.Progress == nil {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(r.opts.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.opts.Progress(r.snapshot())
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		r.opts.Progress(r.snapshot())
	}
}

func (r *run) snapshot() Progress {
	p := Progress{
		Files: r.files.Load(), Bytes: r.bytes.Load(), Unchanged: r.unchanged.Load(),
		Skipped: r.skipped.Load(), Errors: r.errs.Load(), Detections: r.detections.Load(),
		Containers: r.containers.Load(), DoneFiles: r.doneFiles.Load(), DoneBytes: r.doneBytes.Load(),
		TotalFiles: r.totalFiles.Load(), TotalBytes: r.totalBytes.Load(), Elapsed: time.Since(r.start),
	}
	if c := r.current.Load(); c != nil {
		p.Current = *c
	}
	return p
}

// skip counts something not scanned and tells OnFile.
func (r *run) skip(path, cpath string, ctr *Container, reason string, detail error) {
	if IsError(reason) {
		r.errs.Add(1)
	} else {
		r.skipped.Add(1)
	}
	r.reasonsMu.Lock()
	r.reasons[reason]++
	r.reasonsMu.Unlock()
	if r.opts.OnFile != nil {
		ev := FileEvent{Path: path, ContainerPath: cpath, Reason: reason}
		if ctr != nil {
			ev.Container = ctr.ID
		}
		if detail != nil {
			ev.Err = detail.Error()
		}
		r.evMu.Lock()
		r.opts.OnFile(ev)
		r.evMu.Unlock()
	}
}

// prepared is a file opened for clamd.
type prepared struct {
	j     *job
	fd    int
	f     *os.File // made from fd only when needed (the worker path, a detection)
	st    unix.Stat_t
	tries int // connections it was sent on (the pipelined path)
}

func (p *prepared) file() *os.File {
	if p.f == nil {
		// O_NONBLOCK has done its job (it only matters for FIFOs and
		// devices). Clearing it before os.NewFile keeps Go from trying to
		// register the file with its poller.
		if _, err := unix.FcntlInt(uintptr(p.fd), unix.F_SETFL, unix.O_NOATIME); err != nil {
			unix.FcntlInt(uintptr(p.fd), unix.F_SETFL, 0) // opened without O_NOATIME (not the owner)
		}
		p.f = os.NewFile(uintptr(p.fd), p.j.path)
	}
	return p.f
}

func (p *prepared) close() {
	if p.f != nil {
		p.f.Close()
	} else {
		unix.Close(p.fd)
	}
}

func (r *run) worker() {
	var conn Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for j := range r.jobs {
		if r.ctx.Err() == nil && r.pace() == nil {
			if p := r.prepare(j); p != nil {
				r.send(&conn, p)
				p.close()
			}
		}
		j.dir.release()
	}
}

func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// openFile opens a directory entry for reading without following a symlink
// and without blocking if it became a FIFO since the directory was read.
// O_NOATIME keeps scans from touching access times where allowed.
func openFile(dir int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY
	fd, err := unix.Openat(dir, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Openat(dir, name, flags, 0)
	}
	return fd, err
}

// openReason classifies an error opening or stat-ing a directory entry.
func openReason(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT):
		return ReasonVanished
	case errors.Is(err, unix.ELOOP):
		return ReasonSymlink // replaced by a symlink since the directory was read
	case errors.Is(err, unix.ENXIO):
		return ReasonSocket
	}
	return ReasonUnreadable
}

func typeReason(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return ReasonSymlink
	case unix.S_IFIFO:
		return ReasonFIFO
	case unix.S_IFSOCK:
		return ReasonSocket
	}
	return ReasonDevice
}

// pace waits for the scan's Pacer, if it has one (limits without a
// cgroup); an error is the scan's context ending.
func (r *run) pace() error {
	if r.s.cfg.Pacer == nil {
		return nil
	}
	return r.s.cfg.Pacer.Wait(r.ctx)
}

// prepare opens one file for clamd, or counts why it is not sent and
// returns nil.
func (r *run) prepare(j *job) *prepared {
	p := &prepared{j: j}
	st := &p.st
	if r.cache != nil && !r.cache.empty { // nothing to look up: skip the extra stat
		if err := unix.Fstatat(j.dir.fd, j.name, st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			r.doneFiles.Add(1)
			r.skip(j.path, j.cpath, j.ctr, openReason(err), err)
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && r.cache.clean(keyOf(st)) {
			r.unchanged.Add(1)
			r.doneFiles.Add(1)
			r.doneBytes.Add(st.Size)
			return nil
		}
	}
	if r.s.beforeOpen != nil {
		r.s.beforeOpen(j.path)
	}
	fd, err := openFile(j.dir.fd, j.name)
	if err != nil {
		r.doneFiles.Add(1)
		r.skip(j.path, j.cpath, j.ctr, openReason(err), err)
		return nil
	}
	if err := unix.Fstat(fd, st); err != nil {
		unix.Close(fd)
		r.doneFiles.Add(1)
		r.skip(j.path, j.cpath, j.ctr, ReasonUnreadable, err)
		return nil
	}
	r.doneFiles.Add(1)
	reason, detail := "", error(nil)
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		reason = typeReason(st.Mode)
	case st.Nlink > 1 && !r.firstLink(fileID{st.Dev, st.Ino}):
		r.doneBytes.Add(st.Size)
		reason, detail = ReasonAlreadyScanned, errors.New("another name of this file was scanned")
	case st.Size > r.s.cfg.MaxFileSize:
		r.doneBytes.Add(st.Size)
		reason, detail = ReasonTooLarge, fmt.Errorf("%d bytes, over clamd's MaxFileSize of %d", st.Size, r.s.cfg.MaxFileSize)
	}
	if reason != "" {
		unix.Close(fd)
		r.skip(j.path, j.cpath, j.ctr, reason, detail)
		return nil
	}
	// A regular file now; O_NONBLOCK stays (it changes nothing for a
	// regular file, and clamd reads the descriptor either way) until file().
	p.fd = fd
	return p
}

// send has clamd scan one opened file and deals with the answer.
func (r *run) send(conn *Conn, p *prepared) {
	j := p.j
	r.current.Store(&j.path)
	v, err := r.scanFile(conn, p.file())
	r.answered(p, v, err)
}

// answered deals with clamd's answer about one file (err: none came).
func (r *run) answered(p *prepared, v Verdict, err error) {
	j, st := p.j, &p.st
	if err == nil || r.ctx.Err() == nil {
		r.doneBytes.Add(st.Size)
	}
	switch {
	case err != nil:
		if r.ctx.Err() == nil {
			r.skip(j.path, j.cpath, j.ctr, ReasonClamdError, err)
		}
	case v.Limit != "" || isLimitSignature(v.Signature):
		r.skip(j.path, j.cpath, j.ctr, ReasonClamdLimit, errors.New(v.Limit+v.Signature))
	case v.Error != "":
		r.skip(j.path, j.cpath, j.ctr, ReasonClamdError, errors.New(v.Error))
	case v.Signature != "":
		r.files.Add(1)
		r.bytes.Add(st.Size)
		if r.cache != nil {
			r.cache.forget(keyOf(st))
		}
		r.detect(j, p.file(), st, v.Signature)
	default:
		r.files.Add(1)
		r.bytes.Add(st.Size)
		if r.cache != nil {
			r.cache.put(keyOf(st))
		}
	}
}

// isLimitSignature recognises the alerts clamd raises instead of scanning
// past a limit when AlertExceedsMax is on: they say nothing about a virus.
func isLimitSignature(sig string) bool {
	return len(sig) > 27 && sig[:27] == "Heuristics.Limits.Exceeded."
}

func (r *run) firstLink(id fileID) bool {
	r.linksMu.Lock()
	defer r.linksMu.Unlock()
	if _, ok := r.links[id]; ok {
		return false
	}
	r.links[id] = struct{}{}
	return true
}

// scanFile sends f to clamd, opening a connection when the worker has none
// and trying once more on a new one when the connection fails.
func (r *run) scanFile(conn *Conn, f *os.File) (Verdict, error) {
	var last error
	for range 2 {
		if *conn == nil {
			c, err := r.dial()
			if err != nil {
				return Verdict{}, err
			}
			*conn = c
		}
		v, err := (*conn).Scan(r.ctx, f)
		if err == nil {
			r.connFailures.Store(0)
			return v, nil
		}
		(*conn).Close()
		*conn = nil
		if r.ctx.Err() != nil {
			return Verdict{}, r.ctx.Err()
		}
		last = err
		if r.connFailures.Add(1) > maxConnFailures {
			r.fail(fmt.Errorf("clamd failed %d times in a row: %w", maxConnFailures, err))
			return Verdict{}, err
		}
	}
	return Verdict{}, last
}

func (r *run) dial() (Conn, error) {
	var c Conn
	err := r.retryDial(func(ctx context.Context) (err error) {
		c, err = r.s.cfg.Engine.Open(ctx)
		return err
	})
	return c, err
}

// retryDial calls open until it succeeds, the scan ends, or clamd has been
// unreachable for clamdWait (which fails the scan).
func (r *run) retryDial(open func(context.Context) error) error {
	wait := clamdWait
	if r.s.clamdWait > 0 {
		wait = r.s.clamdWait
	}
	deadline := time.Now().Add(wait)
	for {
		err := open(r.ctx)
		if err == nil {
			return nil
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("cannot reach clamd for %s: %w", wait, err)
			r.fail(err)
			return err
		}
		select {
		case <-time.After(time.Second):
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
}
