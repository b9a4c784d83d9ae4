package updater

import (
	"time"

	"github.com/avfleet/avfleet/internal/flock"
	"github.com/avfleet/avfleet/internal/fsutil"

	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/avfleet/avfleet/internal/cvd"
)

// Names inside state_dir (see doc.go for the layout and why).
const (
	dbLink      = "db"
	prevLink    = "prev"
	setsDir     = "sets"
	downloadDir = "download"
	tmpPrefix   = ".tmp-"
	// IgnoreFile and AllowFile are the allowlist files the agent writes into
	// every set; clamd reads any *.ign2 / *.sfp in its database directory.
	IgnoreFile = "avfleet.ign2"
	AllowFile  = "avfleet.sfp"
)

// Store is the on-disk state of installed definitions under state_dir.
type Store struct {
	dir string
}

// OpenStore prepares state_dir. Call Lock before changing anything.
func OpenStore(stateDir string) (*Store, error) {
	s := &Store{dir: stateDir}
	for _, d := range []string{stateDir, s.path(setsDir), s.path(downloadDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return s, nil
}

// Lock takes the store's lock (state_dir/lock, an flock the kernel drops if
// the process dies) so that the daemon and `avfleet agent update` never
// build sets at the same time, then clears what a run that died left half
// done: sets being built, a symlink being swapped, partial downloads. It
// never touches the sets db and prev point to.
func (s *Store) Lock(ctx context.Context) (unlock func(), err error) {
	l, err := flock.Acquire(ctx, s.path("lock"), "another avfleet agent process is installing definitions")
	if err != nil {
		return nil, err
	}
	if err := s.recover(); err != nil {
		l.Release()
		return nil, err
	}
	return l.Release, nil
}

func (s *Store) path(name ...string) string {
	return filepath.Join(append([]string{s.dir}, name...)...)
}

// DBDir is the directory clamd must read: state_dir/db, a symlink to the
// current set. clamd's DatabaseDirectory points here.
func (s *Store) DBDir() string { return s.path(dbLink) }

// DownloadDir is where files are downloaded before they are verified.
func (s *Store) DownloadDir() string { return s.path(downloadDir) }

func (s *Store) recover() error {
	var errs []error
	for _, n := range []string{dbLink, prevLink} {
		if err := os.Remove(s.path(n + ".new")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// fsutil.WriteFile's temporaries left by a crash. last-success is
	// written outside the lock: a temporary under a minute old may be a
	// running daemon's.
	for _, n := range []string{pendingFile, lastSuccessFile} {
		tmps, _ := filepath.Glob(s.path("." + n + ".tmp-*"))
		for _, t := range tmps {
			if fi, err := os.Lstat(t); err != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
			if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	entries, err := os.ReadDir(s.path(setsDir))
	if err != nil {
		return fmt.Errorf("read %s: %w", s.path(setsDir), err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(s.path(setsDir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := emptyDir(s.path(downloadDir)); err != nil {
		errs = append(errs, err)
	}
	if err := s.GC(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up state_dir %s after the last run: %w", s.dir, err)
	}
	return nil
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Set is one installed, immutable set of databases.
type Set struct {
	Name string // "000012"
	Dir  string
	DBs  map[string]*Installed
	// The allowlist files' contents (nil when the set has none).
	Ignore, Allow []byte
}

// Installed is one database file of a set.
type Installed struct {
	Name   string   // "daily"
	File   string   // full path, inside the set's directory
	Kind   cvd.Kind // from the file name: cvd, cld or cud
	Header cvd.Header
}

// Versions is name -> version of the set's databases (nil-safe).
func (s *Set) Versions() map[string]uint {
	v := map[string]uint{}
	if s == nil {
		return v
	}
	for n, d := range s.DBs {
		v[n] = d.Header.Version
	}
	return v
}

// Current returns the set db points to, or nil when none is installed yet.
func (s *Store) Current() (*Set, error) { return s.linked(dbLink) }

// Previous returns the set prev points to, or nil.
func (s *Store) Previous() (*Set, error) { return s.linked(prevLink) }

func (s *Store) linked(link string) (*Set, error) {
	target, err := os.Readlink(s.path(link))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read symlink %s: %w", s.path(link), err)
	}
	name := filepath.Base(target)
	if target != filepath.Join(setsDir, name) {
		return nil, fmt.Errorf("symlink %s points to %q, not into %s/: it was not made by avfleet", s.path(link), target, setsDir)
	}
	return s.loadSet(name)
}

func (s *Store) loadSet(name string) (*Set, error) {
	dir := s.path(setsDir, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read installed set %s: %w", dir, err)
	}
	set := &Set{Name: name, Dir: dir, DBs: map[string]*Installed{}}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch e.Name() {
		case IgnoreFile:
			if set.Ignore, err = os.ReadFile(p); err != nil {
				return nil, err
			}
			continue
		case AllowFile:
			if set.Allow, err = os.ReadFile(p); err != nil {
				return nil, err
			}
			continue
		}
		ext := filepath.Ext(e.Name())
		kind := cvd.Kind(strings.TrimPrefix(ext, "."))
		if kind != cvd.KindCVD && kind != cvd.KindCLD && kind != cvd.KindCUD {
			continue
		}
		h, err := readHeader(p)
		if err != nil {
			return nil, fmt.Errorf("installed set %s: %w", dir, err)
		}
		db := strings.TrimSuffix(e.Name(), ext)
		set.DBs[db] = &Installed{Name: db, File: p, Kind: kind, Header: h}
	}
	return set, nil
}

func readHeader(path string) (cvd.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return cvd.Header{}, err
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil {
		return cvd.Header{}, fmt.Errorf("read header of %s: %w", path, err)
	}
	h, err := cvd.ParseHeader(b)
	if err != nil {
		return cvd.Header{}, fmt.Errorf("header of %s: %w", path, err)
	}
	return h, nil
}

// Build is a set being assembled in sets/.tmp-*; nothing outside the store
// sees it until Commit.
type Build struct {
	s   *Store
	dir string
}

// NewBuild starts a set.
func (s *Store) NewBuild() (*Build, error) {
	var r [6]byte
	_, _ = rand.Read(r[:])
	dir := s.path(setsDir, tmpPrefix+hex.EncodeToString(r[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return &Build{s: s, dir: dir}, nil
}

// Dir is the directory being filled.
func (b *Build) Dir() string { return b.dir }

// Path is where a file named name goes in the build.
func (b *Build) Path(name string) string { return filepath.Join(b.dir, name) }

// Link adds an existing immutable file (from the current set) under name:
// a hard link, or a copy where links are not possible.
func (b *Build) Link(src, name string) error {
	dst := b.Path(name)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("add %s to the new set: %w", src, err)
	}
	defer in.Close()
	return writeFile(dst, in)
}

// Move renames a downloaded and verified file into the build.
func (b *Build) Move(src, name string) error {
	if err := os.Rename(src, b.Path(name)); err != nil {
		return fmt.Errorf("move %s into the new set: %w", src, err)
	}
	return nil
}

// WriteFile writes data under name.
func (b *Build) WriteFile(name string, data []byte) error {
	return writeFile(b.Path(name), bytes.NewReader(data))
}

func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Abort removes the build.
func (b *Build) Abort() { _ = os.RemoveAll(b.dir) }

// Commit makes every file durable, gives the set its final name and returns
// it. The set is complete on disk before it has a name db could point to.
func (b *Build) Commit() (*Set, error) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", b.dir, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("new set %s is empty", b.dir)
	}
	// Every file is durable already: WriteFile and the copy fallback of Link
	// fsync what they write, a hard link shares data that was durable in the
	// old set, and Move only takes files their producer fsynced (downloads,
	// cvd.Patch and cvd.Convert output). What is left to make durable is the
	// directory entries. (fsync costs ~10 ms on a VM disk, and a fleet of
	// nodes on one host pays it per node.)
	if err := fsutil.SyncDir(b.dir); err != nil {
		return nil, err
	}
	name, err := b.s.nextSetName()
	if err != nil {
		return nil, err
	}
	final := b.s.path(setsDir, name)
	if err := os.Rename(b.dir, final); err != nil {
		return nil, fmt.Errorf("name new set %s: %w", final, err)
	}
	if err := fsutil.SyncDir(b.s.path(setsDir)); err != nil {
		return nil, err
	}
	return b.s.loadSet(name)
}

func (s *Store) nextSetName() (string, error) {
	entries, err := os.ReadDir(s.path(setsDir))
	if err != nil {
		return "", err
	}
	n := 0
	for _, e := range entries {
		if v, err := strconv.Atoi(e.Name()); err == nil && v > n {
			n = v
		}
	}
	return fmt.Sprintf("%06d", n+1), nil
}

// Activate points prev at the current set and db at set, each by renaming a
// new symlink over the old one, so db always names a complete set. One
// directory fsync covers both: should only the db rename survive a crash,
// prev still names a set that exists (sets are removed only after both).
func (s *Store) Activate(set *Set) error {
	cur, err := os.Readlink(s.path(dbLink))
	switch {
	case err == nil:
		if err := s.swapLink(prevLink, cur); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read symlink %s: %w", s.path(dbLink), err)
	}
	if err := s.swapLink(dbLink, filepath.Join(setsDir, set.Name)); err != nil {
		return err
	}
	return fsutil.SyncDir(s.dir)
}

// Restore points db back at set (after clamd refused the one Activate
// installed) and leaves prev alone.
func (s *Store) Restore(set *Set) error {
	if err := s.swapLink(dbLink, filepath.Join(setsDir, set.Name)); err != nil {
		return err
	}
	return fsutil.SyncDir(s.dir)
}

// swapLink replaces link by rename(2) of a new symlink; the caller fsyncs
// the directory.
func (s *Store) swapLink(link, target string) error {
	tmp := s.path(link + ".new")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("create symlink %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path(link)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replace symlink %s: %w", s.path(link), err)
	}
	return nil
}

// GC removes every set that neither db nor prev points to.
func (s *Store) GC() error {
	keep := map[string]bool{}
	for _, l := range []string{dbLink, prevLink} {
		if t, err := os.Readlink(s.path(l)); err == nil {
			keep[filepath.Base(t)] = true
		}
	}
	entries, err := os.ReadDir(s.path(setsDir))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if keep[e.Name()] || strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if err := os.RemoveAll(s.path(setsDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Sets lists the set names on disk, for tests and diagnostics.
func (s *Store) Sets() ([]string, error) {
	entries, err := os.ReadDir(s.path(setsDir))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}
