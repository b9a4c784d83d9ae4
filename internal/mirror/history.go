package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/fsutil"
)

// history/<db>/<version>/ holds every verified file of that version:
//
//	<db>.cvd  <db>.cud   the full database as received (signed CVD, or unsigned CUD)
//	<db>.cld             the database as the mirror built it by applying <db>-<version>.cdiff
//	<db>-<version>.cdiff the patch from version-1, as received
//	NAME.sign            a ClamAV 1.5 signature that arrived with NAME
//	NAME.meta            sidecar: what verification established about NAME
//
// The sidecar is written last and removed first: a data file without one was
// never accepted (a crash mid-commit) and is deleted on the next lock.

const metaSuffix = ".meta"

// fileMeta is a sidecar: one accepted file.
type fileMeta struct {
	Name       string      `json:"name"` // in the version directory
	Database   string      `json:"database"`
	Version    uint        `json:"version"` // for a cdiff: the version it produces
	Kind       cvd.Kind    `json:"kind"`
	Size       int64       `json:"size"`
	SHA256     string      `json:"sha256"`
	Header     *cvd.Header `json:"header,omitempty"`
	SignedBy   string      `json:"signed_by"`
	Sign       string      `json:"sign,omitempty"` // NAME.sign beside it, if one came with it
	SignSize   int64       `json:"sign_size,omitempty"`
	SignSHA256 string      `json:"sign_sha256,omitempty"`
	Original   string      `json:"original"` // file name it arrived under
	Source     string      `json:"source"`   // import | incoming | sync
	AcceptedAt time.Time   `json:"accepted_at"`
	Base       uint        `json:"base,omitempty"` // for a CLD: the version the cdiff was applied to
}

// modTime is what Last-Modified says for the file: the header's build time
// for databases (freshclam's If-Modified-Since carries its local build time),
// the acceptance time for cdiffs and .sign files.
func (m *fileMeta) modTime() time.Time {
	if m.Header != nil {
		if t := headerTime(*m.Header); !t.IsZero() {
			return t
		}
	}
	return m.AcceptedAt
}

// headerTime is the build time of a header: stime when present (unix seconds,
// what freshclam compares), else the text field.
func headerTime(h cvd.Header) time.Time {
	if !h.Time.IsZero() {
		return h.Time.UTC()
	}
	if t, err := time.Parse("02 Jan 2006 15-04 -0700", h.BuildTime); err == nil {
		return t.UTC()
	}
	return time.Time{}
}

// versionFiles are the accepted files of one version.
type versionFiles struct {
	full  *fileMeta // cvd or cud
	cld   *fileMeta
	cdiff *fileMeta
}

// database returns the file that holds this version as a whole database,
// preferring the full signed file.
func (v *versionFiles) database() *fileMeta {
	if v == nil {
		return nil
	}
	if v.full != nil {
		return v.full
	}
	return v.cld
}

// dbHistory is everything accepted for one database.
type dbHistory struct {
	name     string
	versions map[uint]*versionFiles
}

// newest is the highest version held as a whole database (full or patched).
func (h *dbHistory) newest() uint {
	var n uint
	for v, f := range h.versions {
		if f.database() != nil && v > n {
			n = v
		}
	}
	return n
}

// newestFull is the newest full (CVD/CUD) file at or below max, or nil.
func (h *dbHistory) newestFull(max uint) *fileMeta {
	var best *fileMeta
	for v, f := range h.versions {
		if f.full != nil && v <= max && (best == nil || v > best.Version) {
			best = f.full
		}
	}
	return best
}

// sortedVersions returns the versions, newest first.
func (h *dbHistory) sortedVersions() []uint {
	vs := make([]uint, 0, len(h.versions))
	for v := range h.versions {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] > vs[j] })
	return vs
}

func (h *dbHistory) at(v uint) *versionFiles {
	f := h.versions[v]
	if f == nil {
		f = &versionFiles{}
		h.versions[v] = f
	}
	return f
}

// catalog is the whole history, by database name.
type catalog map[string]*dbHistory

func (c catalog) db(name string) *dbHistory {
	h := c[name]
	if h == nil {
		h = &dbHistory{name: name, versions: map[uint]*versionFiles{}}
		c[name] = h
	}
	return h
}

func (c catalog) names() []string {
	out := make([]string, 0, len(c))
	for n := range c {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// versionDir is history/<db>/<version>.
func versionDir(historyDir, db string, v uint) string {
	return filepath.Join(historyDir, db, strconv.FormatUint(uint64(v), 10))
}

// loadCatalog reads history/. With clean (the caller holds the pipeline
// lock) it also deletes what a crashed commit left: temporary files and data
// files without a sidecar.
func loadCatalog(historyDir string, clean bool) (catalog, error) {
	c := catalog{}
	dbs, err := os.ReadDir(historyDir)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read history %s: %w", historyDir, err)
	}
	for _, d := range dbs {
		if !d.IsDir() || !validDBName(d.Name()) {
			continue
		}
		vdirs, err := os.ReadDir(filepath.Join(historyDir, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", d.Name(), err)
		}
		for _, vd := range vdirs {
			v, err := strconv.ParseUint(vd.Name(), 10, 32)
			if !vd.IsDir() || err != nil {
				continue
			}
			dir := filepath.Join(historyDir, d.Name(), vd.Name())
			if err := loadVersionDir(c, dir, d.Name(), uint(v), clean); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func loadVersionDir(c catalog, dir, db string, v uint, clean bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	committed := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, metaSuffix) || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
		}
		var m fileMeta
		if err := json.Unmarshal(b, &m); err != nil || m.Name != strings.TrimSuffix(name, metaSuffix) || m.Database != db || m.Version != v {
			// A sidecar is written atomically, so this is damage from
			// outside avfleet; never serve what it describes.
			if clean {
				os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		st, err := os.Stat(filepath.Join(dir, m.Name))
		if err != nil || st.Size() != m.Size {
			if clean {
				os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		committed[m.Name] = true
		if m.Sign != "" {
			committed[m.Sign] = true
		}
		mm := m
		vf := c.db(db).at(v)
		switch m.Kind {
		case cvd.KindCVD, cvd.KindCUD:
			vf.full = &mm
		case cvd.KindCLD:
			vf.cld = &mm
		case cvd.KindCDiff:
			vf.cdiff = &mm
		}
	}
	if clean {
		for _, e := range ents {
			name := e.Name()
			if strings.HasSuffix(name, metaSuffix) && !strings.HasPrefix(name, ".") {
				continue
			}
			if !committed[name] {
				os.RemoveAll(filepath.Join(dir, name))
			}
		}
		if h := c[db]; h == nil || h.versions[v] == nil {
			os.Remove(dir) // empty now; fails harmlessly if not
		}
	}
	return nil
}

// commitFile puts src (and its .sign) into dir under m.Name and writes the
// sidecar last. src stays where it is (hard link), so a crash before the
// sidecar leaves the original to be processed again.
func commitFile(dir string, m *fileMeta, src, signSrc string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, p := range []string{src, signSrc} {
		if p == "" {
			continue
		}
		// Files dropped into incoming/ by hand may not be on disk yet.
		if err := fsyncFile(p); err != nil {
			return err
		}
	}
	if signSrc != "" {
		if err := linkAtomic(filepath.Join(dir, m.Sign), signSrc); err != nil {
			return err
		}
	}
	if err := linkAtomic(filepath.Join(dir, m.Name), src); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, m.Name+metaSuffix), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return err
	}
	// A new version directory must itself be durable in its parent.
	return fsutil.SyncDir(filepath.Dir(dir))
}

// removeCommitted deletes a committed file: sidecar first, so a crash midway
// leaves an uncommitted file that the next lock cleans up.
func removeCommitted(dir string, m *fileMeta) error {
	if err := os.Remove(filepath.Join(dir, m.Name+metaSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", filepath.Join(dir, m.Name+metaSuffix), err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, m.Name))
	if m.Sign != "" {
		os.Remove(filepath.Join(dir, m.Sign))
	}
	os.Remove(dir) // only succeeds when empty
	return nil
}

func fsyncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

func validDBName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '_' || r == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
