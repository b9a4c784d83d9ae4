package mirror

import (
	"github.com/avfleet/avfleet/internal/flock"
	"github.com/avfleet/avfleet/internal/fsutil"

	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror/api"
)

// Options configure a Store.
type Options struct {
	DataDir   string
	Retention config.Retention
	Verifier  Verifier
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now
}

// Store is the mirror's data directory. Every method that changes it takes
// the pipeline lock (in-process mutex plus flock on data_dir/lock), rereads
// history/ and state.db, does its work, and publishes a new set if what
// clients should see changed.
type Store struct {
	opt      Options
	log      *slog.Logger
	state    *State
	incoming string
	history  string
	rejected string
	work     string

	mu        sync.Mutex
	onPublish func(*servedSet)
}

// Result is what the pipeline did with one file.
type Result struct {
	File     string    `json:"file"`
	Outcome  Outcome   `json:"outcome"`
	Database string    `json:"database,omitempty"`
	Version  uint      `json:"version,omitempty"`
	Kind     cvd.Kind  `json:"kind,omitempty"`
	Check    cvd.Check `json:"check,omitempty"`
	Reason   string    `json:"reason,omitempty"`    // for rejections: the one-line verification error
	StoredAs string    `json:"stored_as,omitempty"` // rejected/<time>-<name>
}

// ErrUnknownDatabase is returned for hold/release/rollback of a database the
// mirror has never verified.
var ErrUnknownDatabase = errors.New("no verified version of this database")

// ErrNoSuchVersion is returned by Rollback for a version history does not
// hold (never verified, or removed by retention) or that no longer verifies.
var ErrNoSuchVersion = errors.New("version not available")

// Open opens the store in opt.DataDir, creating its directories and
// state.db. It does not take the lock: read-only commands (status) use it
// while the daemon runs.
func Open(opt Options) (*Store, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Retention.Versions < 1 {
		opt.Retention.Versions = 1
	}
	s := &Store{
		opt:      opt,
		log:      opt.Logger,
		incoming: filepath.Join(opt.DataDir, "incoming"),
		history:  filepath.Join(opt.DataDir, "history"),
		rejected: filepath.Join(opt.DataDir, "rejected"),
		work:     filepath.Join(opt.DataDir, "work"),
	}
	for _, d := range []string{opt.DataDir, s.incoming, s.history, s.rejected, s.work, filepath.Join(opt.DataDir, setsDirName)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create data directory %s: %w", d, err)
		}
	}
	st, err := OpenState(filepath.Join(opt.DataDir, "state.db"))
	if err != nil {
		return nil, err
	}
	s.state = st
	return s, nil
}

// Close closes state.db.
func (s *Store) Close() error { return s.state.Close() }

// State gives access to state.db (upstream sync records its results and
// cool-downs there).
func (s *Store) State() *State { return s.state }

// IncomingDir is where files wait for verification.
func (s *Store) IncomingDir() string { return s.incoming }

// Current returns the published set as it is on disk now.
func (s *Store) current() (*servedSet, error) {
	set, _, err := loadCurrentSet(s.opt.DataDir)
	return set, err
}

// Manifest returns the manifest of the published set.
func (s *Store) Manifest() (api.Manifest, error) {
	set, err := s.current()
	if err != nil {
		return api.Manifest{}, err
	}
	return set.manifest, nil
}

// locked is the state a method sees while it holds the lock.
type locked struct {
	cat  catalog
	pins map[string]Pin
}

// withLock runs fn holding the pipeline lock, after recovering whatever a
// crashed process left behind, and publishes afterwards.
func (s *Store) withLock(ctx context.Context, fn func(*locked) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fl, err := flock.Acquire(ctx, filepath.Join(s.opt.DataDir, "lock"), "held by another avfleet mirror process")
	if err != nil {
		return err
	}
	defer fl.Release()
	l, err := s.recoverLocked()
	if err != nil {
		return err
	}
	ferr := fn(l)
	// Publish even after an error: whatever was committed must be served.
	if err := s.publishLocked(l); err != nil {
		return errors.Join(ferr, err)
	}
	return ferr
}

// recoverLocked puts files a crashed process was working on back into
// incoming/, removes temporary and uncommitted files, and reads history and
// pins.
func (s *Store) recoverLocked() (*locked, error) {
	ents, err := os.ReadDir(s.work)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.work, err)
	}
	for _, e := range ents {
		wd := filepath.Join(s.work, e.Name())
		in := filepath.Join(wd, "in")
		files, _ := os.ReadDir(in)
		for _, f := range files {
			dst := filepath.Join(s.incoming, f.Name())
			if _, err := os.Lstat(dst); err == nil {
				continue // a newer copy is waiting already
			}
			if err := os.Rename(filepath.Join(in, f.Name()), dst); err == nil {
				s.log.Info("requeued file from an interrupted verification", "file", f.Name())
			}
		}
		os.RemoveAll(wd)
	}
	_ = fsutil.SyncDir(s.incoming)
	_ = removeStaleTemps(s.incoming, time.Hour)
	_ = removeStaleTemps(s.opt.DataDir, 0)
	_ = removeStaleTemps(s.rejected, 0)
	cat, err := loadCatalog(s.history, true)
	if err != nil {
		return nil, err
	}
	pins, err := s.state.Pins()
	if err != nil {
		return nil, err
	}
	return &locked{cat: cat, pins: pins}, nil
}

// publishLocked publishes a new set if the planned one differs from the
// current, then applies retention.
func (s *Store) publishLocked(l *locked) error {
	dbs, files := planSet(l.cat, l.pins, s.history, s.opt.Retention.CDiffs)
	cur, target, err := loadCurrentSet(s.opt.DataDir)
	if err != nil {
		// A damaged current set is replaced rather than served.
		s.log.Warn("published set unreadable; publishing a new one", "err", err)
		cur = nil
	}
	if !sameFiles(cur, dbs, files) && (cur != nil || len(files) > 0) {
		gens, err := setGenerations(s.opt.DataDir)
		if err != nil {
			return err
		}
		var gen uint64 = 1
		if len(gens) > 0 {
			gen = gens[len(gens)-1] + 1
		}
		set, err := writeSet(s.opt.DataDir, gen, s.opt.Now(), dbs, files)
		if err != nil {
			return err
		}
		target = filepath.Join(setsDirName, strconv.FormatUint(gen, 10))
		s.log.Info("published verified set", "generation", gen, "databases", len(dbs), "files", len(files))
		if s.onPublish != nil {
			s.onPublish(set)
		}
	}
	pruneSets(s.opt.DataDir, target, s.opt.Now())
	for _, p := range planPrune(l.cat, l.pins, files, s.history, s.opt.Retention.Versions, s.opt.Retention.CDiffs) {
		if err := removeCommitted(p.dir, p.m); err != nil {
			return err
		}
		s.log.Info("retention: removed from history", "database", p.m.Database, "version", p.m.Version, "file", p.m.Name)
	}
	pruneRejected(s.rejected, keepRejectedFiles)
	return nil
}

// keepRejectedFiles bounds rejected/: a misbehaving upstream must not fill
// the disk. state.db keeps the log.
const keepRejectedFiles = 200

func pruneRejected(dir string, keep int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var data []string
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".reason") && !strings.HasSuffix(n, ".sign") && !strings.HasPrefix(n, ".") {
			data = append(data, n)
		}
	}
	if len(data) <= keep {
		return
	}
	sort.Strings(data) // names start with the UTC time
	for _, n := range data[:len(data)-keep] {
		for _, suffix := range []string{"", ".reason", ".sign"} {
			os.Remove(filepath.Join(dir, n+suffix))
		}
	}
}

// PutIncoming writes r to incoming/name atomically (temporary name, fsync,
// rename), where the next Ingest or the daemon's scan finds it. Upstream sync
// writes a file's .sign (as name+".sign") before the file itself.
func (s *Store) PutIncoming(name string, r io.Reader) error {
	if !isServableName(name) || isTempName(name) {
		return fmt.Errorf("put %q into incoming: not a plain file name", name)
	}
	_, err := writeAtomic(filepath.Join(s.incoming, name), r, 0o644)
	return err
}

// Ingest runs the pipeline on incoming/name: verify, apply the rules, then
// history/ (and a new published set) or rejected/. source ("sync",
// "incoming", "import") is recorded with rejections.
func (s *Store) Ingest(ctx context.Context, name, source string) (Result, error) {
	var res Result
	err := s.withLock(ctx, func(l *locked) error {
		var err error
		res, err = s.ingestLocked(l, name, name, source)
		return err
	})
	return res, err
}

// Pending lists the files in incoming/ ready for verification, in the order
// they will be processed.
func (s *Store) Pending() ([]string, error) {
	ents, err := os.ReadDir(s.incoming)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.incoming, err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if isTempName(n) || strings.HasSuffix(n, ".sign") || !e.Type().IsRegular() {
			continue
		}
		names = append(names, n)
	}
	sortForIngest(s.incoming, names)
	return names, nil
}

// ProcessIncoming ingests everything waiting in incoming/. It returns at
// once, without the lock, when nothing waits.
func (s *Store) ProcessIncoming(ctx context.Context) ([]Result, error) {
	return s.processIncoming(ctx, 0)
}

// processIncoming skips files modified less than settle ago: the daemon's
// scan gives a `cp` into incoming/ (not the documented copy-and-rename)
// time to finish rather than rejecting half a file.
func (s *Store) processIncoming(ctx context.Context, settle time.Duration) ([]Result, error) {
	settled := func() ([]string, error) {
		names, err := s.Pending()
		if err != nil || settle <= 0 {
			return names, err
		}
		out := names[:0]
		for _, n := range names {
			if st, err := os.Stat(filepath.Join(s.incoming, n)); err == nil && time.Since(st.ModTime()) >= settle {
				out = append(out, n)
			}
		}
		return out, nil
	}
	names, err := settled()
	if err != nil || len(names) == 0 {
		return nil, err
	}
	var out []Result
	err = s.withLock(ctx, func(l *locked) error {
		names, err := settled() // again, under the lock: another process may have taken some
		if err != nil {
			return err
		}
		for _, n := range names {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r, err := s.ingestLocked(l, n, n, "incoming")
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Import copies files into incoming/ atomically and ingests them now, in
// version order (so test-1.cvd test-2.cdiff ... test-6.cvd works whatever
// order the shell gave). A FILE.sign beside a FILE travels with it.
func (s *Store) Import(ctx context.Context, paths []string) ([]Result, error) {
	srcs := OpenSources(paths)
	defer CloseSources(srcs)
	return s.ImportSources(ctx, srcs)
}

// Source is a file given to import, opened by OpenSources before the store
// is touched: a command run by root reads it as root, then takes the
// identity of the data directory's owner (RunAsDataDirOwner), who may not be
// allowed to read it.
type Source struct {
	path     string   // as given, cleaned
	f        *os.File // nil when rejected, or when it travels with another file
	sign     *os.File // the .sign travelling with it, or nil
	rejected *Result  // why it is not imported
}

// OpenSources opens each path, and the .sign that travels with it (FILE.sign,
// or the {db}-{version}.cvd.sign beside a {db}.cvd). A path that cannot be
// imported (a lone .sign, a temporary name, unreadable, not a regular file)
// becomes a rejected Result in ImportSources.
func OpenSources(paths []string) []*Source {
	travelling := map[string]bool{} // .sign files that go with a given file
	signOf := map[string]string{}
	for _, p := range paths {
		p = filepath.Clean(p)
		if !strings.HasSuffix(p, ".sign") {
			if sign := cvd.FindSign(p); sign != "" {
				travelling[filepath.Clean(sign)] = true
				signOf[p] = sign
			}
		}
	}
	var out []*Source
	for _, p := range paths {
		p = filepath.Clean(p)
		name := filepath.Base(p)
		src := &Source{path: p}
		reject := func(check cvd.Check, reason string) {
			src.rejected = &Result{File: p, Outcome: Rejected, Check: check, Reason: reason}
		}
		switch {
		case strings.HasSuffix(name, ".sign"):
			if travelling[p] {
				continue
			}
			reject(cvd.CheckSign, fmt.Sprintf("%s: a .sign file is imported together with its database file (give that file instead)", p))
		case !isServableName(name) || isTempName(name):
			reject(cvd.CheckIO, fmt.Sprintf("%s: file names starting with '.' or ending in .tmp/.part are never imported", p))
		default:
			var err error
			if sign := signOf[p]; sign != "" {
				if src.sign, err = openRegular(sign); err != nil {
					reject(cvd.CheckIO, fmt.Sprintf("import %s: %v", sign, err))
					break
				}
			}
			if src.f, err = openRegular(p); err != nil {
				reject(cvd.CheckIO, fmt.Sprintf("import %s: %v", p, err))
			}
		}
		out = append(out, src)
	}
	return out
}

// openRegular opens a regular file for reading.
func openRegular(p string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", p)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CloseSources closes the files OpenSources opened.
func CloseSources(srcs []*Source) {
	for _, s := range srcs {
		for _, f := range []*os.File{s.f, s.sign} {
			if f != nil {
				f.Close()
			}
		}
	}
}

// ImportSources is Import of files opened by OpenSources.
func (s *Store) ImportSources(ctx context.Context, srcs []*Source) ([]Result, error) {
	var out []Result
	err := s.withLock(ctx, func(l *locked) error {
		var items []*Source
		for _, src := range srcs {
			if src.rejected != nil {
				out = append(out, *src.rejected)
			} else if src.f != nil {
				items = append(items, src)
			}
		}
		// A file of the same name already waiting is processed first, so the
		// one given now does not overwrite it unseen.
		for _, it := range items {
			name := filepath.Base(it.path)
			if _, err := os.Lstat(filepath.Join(s.incoming, name)); err == nil {
				r, err := s.ingestLocked(l, name, name, "incoming")
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				if err == nil {
					s.log.Info("processed a file that was waiting in incoming/ under the same name", "file", name, "outcome", r.Outcome)
				}
			}
		}
		names := make([]string, 0, len(items))
		byName := map[string]string{}
		for _, it := range items {
			name := filepath.Base(it.path)
			if prev, dup := byName[name]; dup {
				out = append(out, Result{File: it.path, Outcome: Rejected, Check: cvd.CheckIO, Reason: fmt.Sprintf("%s: same file name as %s in one import", it.path, prev)})
				continue
			}
			if err := s.copyIn(it, name); err != nil {
				out = append(out, Result{File: it.path, Outcome: Rejected, Check: cvd.CheckIO, Reason: err.Error()})
				continue
			}
			byName[name] = it.path
			names = append(names, name)
		}
		sortForIngest(s.incoming, names)
		for _, n := range names {
			r, err := s.ingestLocked(l, n, byName[n], "import")
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// copyIn copies a source (and its .sign) into incoming/name: the .sign
// first, so the scanner never sees the file without it.
func (s *Store) copyIn(src *Source, name string) error {
	if src.sign != nil {
		if err := copyFromFile(filepath.Join(s.incoming, name+".sign"), src.sign); err != nil {
			return fmt.Errorf("import %s: %w", src.sign.Name(), err)
		}
	}
	if err := copyFromFile(filepath.Join(s.incoming, name), src.f); err != nil {
		return fmt.Errorf("import %s: %w", src.path, err)
	}
	return nil
}

// copyFromFile copies an open file, from its start, to dst atomically.
func copyFromFile(dst string, f *os.File) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	_, err := writeAtomic(dst, f, 0o644)
	return err
}

var (
	cdiffName = regexp.MustCompile(`^([a-z0-9][a-z0-9_-]*)-([0-9]+)\.cdiff$`)
	dbFile    = regexp.MustCompile(`^([a-z0-9][a-z0-9_-]*?)(?:-([0-9]+))?\.(cvd|cld|cud)$`)
)

// peekHeader reads just enough of a file to order it: the kind ("vdb" or
// "diff") and version from the header. The verifier decides everything else.
func peekHeader(path string) (string, uint, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, false
	}
	defer f.Close()
	b := make([]byte, 512)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	var kind string
	var field int
	switch {
	case bytes.HasPrefix(b, []byte("ClamAV-VDB:")):
		kind, field = "vdb", 2
	case bytes.HasPrefix(b, []byte("ClamAV-Diff:")):
		kind, field = "diff", 1
	default:
		return "", 0, false
	}
	parts := bytes.SplitN(b, []byte(":"), field+2)
	if len(parts) < field+2 {
		return "", 0, false
	}
	v, err := strconv.ParseUint(string(parts[field]), 10, 32)
	if err != nil {
		return "", 0, false
	}
	return kind, uint(v), true
}

// sortForIngest orders files so chains apply: by version, a cdiff before a
// full database of the same version (test-6.cdiff must patch 5 -> 6 before
// test-6.cvd makes 6 the newest), unreadable files last.
func sortForIngest(dir string, names []string) {
	type key struct {
		v    uint
		rank int
	}
	keys := map[string]key{}
	for _, n := range names {
		kind, v, ok := peekHeader(filepath.Join(dir, n))
		switch {
		case !ok:
			keys[n] = key{math.MaxUint32, 2}
		case kind == "diff":
			keys[n] = key{v, 0}
		default:
			keys[n] = key{v, 1}
		}
	}
	sort.SliceStable(names, func(i, j int) bool {
		a, b := keys[names[i]], keys[names[j]]
		if a.v != b.v {
			return a.v < b.v
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return names[i] < names[j]
	})
}

// guessDB names the database a rejected file was meant for, from its name.
func guessDB(name string) string {
	if m := cdiffName.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	if m := dbFile.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return ""
}

// oneLine keeps a reason on one line, whatever an error wrapped.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\x00", " ")), " ")
}

// ingestLocked is the pipeline for incoming/name. display is the name shown
// to the operator (the path given to import). It returns os.ErrNotExist when
// the file is gone (another process took it).
func (s *Store) ingestLocked(l *locked, name, display, source string) (Result, error) {
	now := s.opt.Now().UTC()
	res := Result{File: display}
	wd := filepath.Join(s.work, now.Format("20060102T150405.000000000Z")+"-"+randomSuffix())
	in, out := filepath.Join(wd, "in"), filepath.Join(wd, "out")
	for _, d := range []string{in, out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, fmt.Errorf("create %s: %w", d, err)
		}
	}
	sign := cvd.FindSign(filepath.Join(s.incoming, name))
	path := filepath.Join(in, name)
	if err := os.Rename(filepath.Join(s.incoming, name), path); err != nil {
		os.RemoveAll(wd)
		return res, err
	}
	signPath := ""
	if sign != "" {
		signPath = path + ".sign"
		if err := os.Rename(sign, signPath); err != nil {
			signPath = ""
		}
	}
	_ = fsutil.SyncDir(in)
	_ = fsutil.SyncDir(s.incoming)
	done := false
	defer func() {
		if done {
			os.RemoveAll(wd)
		}
		// Otherwise the next lock holder requeues in/ (an I/O error here).
	}()

	d, info, meta := s.evaluate(l, path, name, out)
	res.Outcome, res.Database, res.Check = d.outcome, meta.db, d.check
	if info != nil {
		res.Kind, res.Version = info.Kind, meta.version
	}
	switch d.outcome {
	case Rejected:
		res.Reason = oneLine((&cvd.VerifyError{File: display, Check: d.check, Reason: d.reason}).Error())
		stored, err := s.rejectLocked(now, name, path, signPath, res, source)
		if err != nil {
			return res, err
		}
		res.StoredAs = stored
		s.log.Warn("rejected", "file", display, "check", d.check, "reason", res.Reason, "stored_as", stored)
	case Ignored:
		res.Reason = d.reason
		if err := s.state.recordOutcome(Ignored, nil); err != nil {
			return res, err
		}
		s.log.Info("ignored", "file", display, "reason", d.reason)
	case Accepted:
		if err := s.commitLocked(l, now, name, path, signPath, out, info, meta, source); err != nil {
			return res, err
		}
		if err := s.state.recordOutcome(Accepted, nil); err != nil {
			return res, err
		}
		s.log.Info("accepted", "file", display, "database", meta.db, "version", meta.version, "kind", info.Kind)
	}
	done = true
	return res, nil
}

// evalMeta is what evaluate learned besides the decision.
type evalMeta struct {
	db      string
	version uint
	patched *cvd.Info // for a cdiff: the CLD it produced, in out/
}

// evaluate verifies the file and applies the rules.
func (s *Store) evaluate(l *locked, path, name, out string) (decision, *cvd.Info, evalMeta) {
	meta := evalMeta{db: guessDB(name)}
	info, err := s.opt.Verifier.Verify(path)
	if err != nil {
		var ve *cvd.VerifyError
		if errors.As(err, &ve) {
			return decision{outcome: Rejected, check: ve.Check, reason: ve.Reason}, nil, meta
		}
		return decision{outcome: Rejected, check: cvd.CheckIO, reason: err.Error()}, nil, meta
	}
	switch info.Kind {
	case cvd.KindCVD, cvd.KindCUD, cvd.KindCLD:
		meta.db, meta.version = info.Name, info.Header.Version
		if !validDBName(meta.db) {
			return reject(cvd.CheckFormat, "database name %q is not a valid name", meta.db), info, meta
		}
		if info.Kind == cvd.KindCLD {
			return decideCLD(l.cat[meta.db], meta.version, info.SHA256), info, meta
		}
		return decideFull(l.cat[meta.db], meta.version, info.SignedBy, info.SHA256), info, meta
	case cvd.KindCDiff:
		m := cdiffName.FindStringSubmatch(name)
		if m == nil {
			return reject(cvd.CheckFormat, "a cdiff must be named DB-VERSION.cdiff (the database is not written inside it)"), info, meta
		}
		n, _ := strconv.ParseUint(m[2], 10, 32)
		meta.db, meta.version = m[1], uint(n)
		if info.CDiffVersion != 0 && info.CDiffVersion != meta.version {
			return reject(cvd.CheckVersion, "file name says version %d, the cdiff header says %d", meta.version, info.CDiffVersion), info, meta
		}
		d := decideCDiff(l.cat[meta.db], meta.db, meta.version, info.SHA256)
		if d.outcome != Accepted {
			return d, info, meta
		}
		h := l.cat[meta.db]
		base := h.versions[meta.version-1].database()
		basePath := filepath.Join(versionDir(s.history, meta.db, meta.version-1), base.Name)
		p, err := s.opt.Verifier.Patch(basePath, []string{path}, filepath.Join(out, meta.db+".cld"))
		if err != nil {
			check := cvd.CheckOf(err)
			if check == "" {
				check = cvd.CheckCDiff
			}
			reason := err.Error()
			var ve *cvd.VerifyError
			if errors.As(err, &ve) {
				reason = ve.Reason // without the temporary path it names
			}
			return reject(check, "applying it to verified version %d: %s", meta.version-1, oneLine(reason)), info, meta
		}
		if p.Header.Version != meta.version {
			return reject(cvd.CheckVersion, "patched database has version %d, expected %d", p.Header.Version, meta.version), info, meta
		}
		meta.patched = p
		return accept(), info, meta
	}
	return reject(cvd.CheckFormat, "unexpected kind %q", info.Kind), info, meta
}

// commitLocked moves an accepted file into history and updates the catalog.
func (s *Store) commitLocked(l *locked, now time.Time, name, path, signPath, out string, info *cvd.Info, em evalMeta, source string) error {
	h := l.cat.db(em.db)
	dir := versionDir(s.history, em.db, em.version)
	mk := func(stored string, kind cvd.Kind, i *cvd.Info, sign string) (*fileMeta, error) {
		m := &fileMeta{Name: stored, Database: em.db, Version: em.version, Kind: kind, Size: i.Size, SHA256: i.SHA256,
			SignedBy: i.SignedBy, Original: name, Source: source, AcceptedAt: now}
		if kind != cvd.KindCDiff {
			hdr := i.Header
			m.Header = &hdr
		}
		if sign != "" {
			sz, sum, err := fileSHA256(sign)
			if err != nil {
				return nil, err
			}
			m.Sign, m.SignSize, m.SignSHA256 = stored+".sign", sz, sum
		}
		return m, nil
	}
	switch info.Kind {
	case cvd.KindCVD, cvd.KindCUD, cvd.KindCLD:
		m, err := mk(em.db+"."+string(info.Kind), info.Kind, info, signPath)
		if err != nil {
			return err
		}
		if err := commitFile(dir, m, path, signPath); err != nil {
			return err
		}
		vf := h.at(em.version)
		if info.Kind == cvd.KindCLD {
			vf.cld = m
		} else {
			vf.full = m
		}
	case cvd.KindCDiff:
		// The CLD first: a version counts as reached by its whole database,
		// and a crash between the two leaves a consistent (if cdiff-less)
		// version.
		base := h.versions[em.version-1].database()
		cm, err := mk(em.db+".cld", cvd.KindCLD, em.patched, "")
		if err != nil {
			return err
		}
		cm.Base, cm.SignedBy = em.version-1, base.SignedBy
		if err := commitFile(dir, cm, filepath.Join(out, em.db+".cld"), ""); err != nil {
			return err
		}
		dm, err := mk(fmt.Sprintf("%s-%d.cdiff", em.db, em.version), cvd.KindCDiff, info, signPath)
		if err != nil {
			return err
		}
		if err := commitFile(dir, dm, path, signPath); err != nil {
			return err
		}
		vf := h.at(em.version)
		vf.cld, vf.cdiff = cm, dm
	}
	return nil
}

// rejectLocked logs the rejection in state.db and moves the file (and its
// .sign) to rejected/<time>-<name> beside a .reason file.
func (s *Store) rejectLocked(now time.Time, name, path, signPath string, res Result, source string) (string, error) {
	stored := now.Format("20060102T150405.000Z") + "-" + name
	dst := filepath.Join(s.rejected, stored)
	if err := writeFileAtomic(dst+".reason", []byte(res.Reason+"\n"), 0o644); err != nil {
		return "", err
	}
	rej := &Rejection{Time: now, Database: res.Database, File: res.File, Check: string(res.Check), Reason: res.Reason,
		Source: source, StoredAs: filepath.Join("rejected", stored)}
	if err := s.state.recordOutcome(Rejected, rej); err != nil {
		return "", err
	}
	if err := os.Rename(path, dst); err != nil {
		return "", fmt.Errorf("move rejected file to %s: %w", dst, err)
	}
	if signPath != "" {
		_ = os.Rename(signPath, dst+".sign")
	}
	return filepath.Join("rejected", stored), fsutil.SyncDir(s.rejected)
}

// Hold freezes db at the version served now.
func (s *Store) Hold(ctx context.Context, db string) (Pin, error) {
	var pin Pin
	err := s.withLock(ctx, func(l *locked) error {
		h := l.cat[db]
		if h == nil || h.newest() == 0 {
			return fmt.Errorf("hold %s: %w", db, ErrUnknownDatabase)
		}
		v := h.newest()
		if p, ok := l.pins[db]; ok {
			if p.Kind == "hold" {
				pin = p
				return nil
			}
			v = p.Version // a rollback becomes a hold at the rolled-back version
		}
		pin = Pin{Database: db, Version: v, Kind: "hold", Since: s.opt.Now().UTC()}
		if err := s.state.SetPin(pin); err != nil {
			return err
		}
		l.pins[db] = pin
		s.log.Info("database held", "database", db, "version", v)
		return nil
	})
	return pin, err
}

// Release removes the hold or rollback of db; clients get the newest
// verified version again. It reports whether there was a pin.
func (s *Store) Release(ctx context.Context, db string) (bool, error) {
	var had bool
	err := s.withLock(ctx, func(l *locked) error {
		if l.cat[db] == nil {
			return fmt.Errorf("release %s: %w", db, ErrUnknownDatabase)
		}
		var err error
		if had, err = s.state.DeletePin(db); err != nil {
			return err
		}
		delete(l.pins, db)
		s.log.Info("database released", "database", db, "was_pinned", had)
		return nil
	})
	return had, err
}

// Rollback serves an older (or any held) verified version of db. The file is
// verified again first: history is only trusted as far as the verifier says.
func (s *Store) Rollback(ctx context.Context, db string, version uint) (Pin, error) {
	var pin Pin
	err := s.withLock(ctx, func(l *locked) error {
		h := l.cat[db]
		if h == nil {
			return fmt.Errorf("rollback %s: %w", db, ErrUnknownDatabase)
		}
		m := h.versions[version].database()
		if m == nil {
			var have []string
			for _, v := range h.sortedVersions() {
				if h.versions[v].database() != nil {
					have = append(have, strconv.FormatUint(uint64(v), 10))
				}
			}
			return fmt.Errorf("rollback %s: version %d is not in history (have: %s): %w", db, version, strings.Join(have, ", "), ErrNoSuchVersion)
		}
		if _, err := s.opt.Verifier.Verify(filepath.Join(versionDir(s.history, db, version), m.Name)); err != nil {
			return fmt.Errorf("rollback %s to %d: the stored file no longer verifies (%w): %w", db, version, ErrNoSuchVersion, err)
		}
		pin = Pin{Database: db, Version: version, Kind: "rollback", Since: s.opt.Now().UTC()}
		if err := s.state.SetPin(pin); err != nil {
			return err
		}
		l.pins[db] = pin
		s.log.Info("database rolled back", "database", db, "version", version)
		return nil
	})
	return pin, err
}

// Held describes what the mirror holds of one database, for upstream sync.
type Held struct {
	Database string
	// Newest is the newest verified version (cdiffs for Newest+1 apply).
	Newest uint
	// NewestPath is the file holding Newest (CVD, CUD or the mirror's CLD).
	NewestPath string
	// NewestBuildTime is its header build time (for If-Modified-Since).
	NewestBuildTime time.Time
	// FullVersion is the newest full (signed CVD or CUD) version, 0 if none.
	FullVersion uint
}

// Held returns what the mirror holds of db (zero Newest when nothing). It
// reads history without the lock; the answer may be stale by one import.
func (s *Store) Held(db string) (Held, error) {
	cat, err := loadCatalog(s.history, false)
	if err != nil {
		return Held{}, err
	}
	out := Held{Database: db}
	h := cat[db]
	if h == nil {
		return out, nil
	}
	out.Newest = h.newest()
	if m := h.versions[out.Newest].database(); m != nil {
		out.NewestPath = filepath.Join(versionDir(s.history, db, out.Newest), m.Name)
		out.NewestBuildTime = m.modTime()
	}
	if f := h.newestFull(^uint(0)); f != nil {
		out.FullVersion = f.Version
	}
	return out, nil
}
