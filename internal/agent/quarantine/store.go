package quarantine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// Errors a caller (the quarantine command) maps to exit codes.
var (
	ErrNotFound = errors.New("no such quarantine entry")
	ErrExists   = errors.New("a file exists at the original path")
	ErrGone     = errors.New("the original location no longer exists")
	ErrDamaged  = errors.New("the quarantined copy is damaged")
	ErrRefused  = errors.New("refusing to follow a symlink")
)

// Root identifies a container's root filesystem at scan time, so that a
// restore goes back into the same container and not into whatever process
// has since reused the PID.
type Root struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	MntNS uint64 `json:"mnt_ns"`
}

// Meta describes one quarantined file; it is stored as ID.json beside ID.data.
type Meta struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	// Path is where the agent read the file: a host path, or
	// /proc/PID/root/... for a file in a container.
	Path          string    `json:"path"`
	Container     string    `json:"container"`      // container id; "" on the host
	ContainerPath string    `json:"container_path"` // the path inside the container
	ContainerPID  int       `json:"container_pid"`
	ContainerRoot *Root     `json:"container_root,omitempty"`
	UID           int       `json:"uid"`
	GID           int       `json:"gid"`
	Mode          string    `json:"mode"` // octal permission and set-id bits, e.g. "0755"
	Size          int64     `json:"size"`
	MTime         time.Time `json:"mtime"`
	SHA256        string    `json:"sha256"`
	Signature     string    `json:"signature"`
	Action        string    `json:"action"` // copy | move
	ScanID        string    `json:"scan_id"`
	Time          time.Time `json:"time"` // when it was quarantined
}

// FileMode gives Mode back as permission and set-id bits.
func (m Meta) FileMode() (uint32, error) {
	v, err := strconv.ParseUint(m.Mode, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("quarantine entry %s: mode %q is not octal permission bits", m.ID, m.Mode)
	}
	return uint32(v), nil
}

// ModeString formats permission and set-id bits for Meta.Mode.
func ModeString(mode uint32) string { return fmt.Sprintf("%04o", mode&0o7777) }

// Store is a quarantine directory.
type Store struct {
	dir string
	now func() time.Time
}

// Open opens (creating if needed) the quarantine directory and makes sure no
// one but its owner can enter it.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("quarantine: no directory configured (scan.quarantine_dir)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("quarantine %s: not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("quarantine %s: make it 0700: %w", dir, err)
		}
	}
	return &Store{dir: dir, now: time.Now}, nil
}

// OpenExisting opens a quarantine directory for reading; it creates nothing.
func OpenExisting(dir string) (*Store, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("quarantine %s: not a directory", dir)
	}
	return &Store{dir: dir, now: time.Now}, nil
}

// Dir is the quarantine directory.
func (s *Store) Dir() string { return s.dir }

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

func newID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// DataPath and MetaPath are where entry id keeps its bytes and its metadata.
func (s *Store) DataPath(id string) string { return filepath.Join(s.dir, id+".data") }
func (s *Store) MetaPath(id string) string { return filepath.Join(s.dir, id+".json") }

// Put copies src (read from offset 0, whatever its file offset) into the
// quarantine and records m with ID, Size, SHA256 and Time filled in. The
// caller removes the original for a move, once Put has succeeded.
func (s *Store) Put(src *os.File, m Meta) (Meta, error) {
	m.Time = s.now().UTC()
	m.ID = newID(m.Time)
	data := s.DataPath(m.ID)
	tmp, err := os.OpenFile(filepath.Join(s.dir, "."+m.ID+".data.tmp"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return m, fmt.Errorf("quarantine %s: %w", m.Path, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.NewSectionReader(src, 0, math.MaxInt64))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return m, fmt.Errorf("quarantine %s: copy to %s: %w", m.Path, tmp.Name(), err)
	}
	m.Size = n
	m.SHA256 = hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp.Name(), data); err != nil {
		return m, fmt.Errorf("quarantine %s: %w", m.Path, err)
	}
	if err := writeJSON(s.MetaPath(m.ID), m); err != nil {
		os.Remove(data)
		return m, fmt.Errorf("quarantine %s: %w", m.Path, err)
	}
	fsutil.SyncDir(s.dir) // best effort: the change is made either way
	return m, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o600)
}

// List returns every entry, oldest first. An entry whose metadata cannot be
// read is returned with only its ID and an error naming it.
func (s *Store) List() ([]Meta, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", s.dir, err)
	}
	var out []Meta
	var errs []error
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idPattern.MatchString(id) {
			continue
		}
		m, err := s.Get(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Meta) int { return strings.Compare(a.ID, b.ID) })
	return out, errors.Join(errs...)
}

// Get reads one entry's metadata.
func (s *Store) Get(id string) (Meta, error) {
	if !idPattern.MatchString(id) {
		return Meta{}, fmt.Errorf("quarantine entry %q: %w (IDs look like 20250102T030405Z-1a2b3c4d)", id, ErrNotFound)
	}
	b, err := os.ReadFile(s.MetaPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return Meta{}, fmt.Errorf("quarantine entry %s: %w in %s", id, ErrNotFound, s.dir)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("quarantine entry %s: %w", id, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("quarantine entry %s: %s: %w", id, s.MetaPath(id), err)
	}
	if m.ID != id {
		return Meta{}, fmt.Errorf("quarantine entry %s: %s names ID %q", id, s.MetaPath(id), m.ID)
	}
	return m, nil
}

// Delete removes an entry (bytes and metadata).
func (s *Store) Delete(id string) error {
	if _, err := s.Get(id); err != nil {
		return err
	}
	if err := os.Remove(s.DataPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("quarantine entry %s: %w", id, err)
	}
	if err := os.Remove(s.MetaPath(id)); err != nil {
		return fmt.Errorf("quarantine entry %s: %w", id, err)
	}
	fsutil.SyncDir(s.dir) // best effort: the change is made either way
	return nil
}
