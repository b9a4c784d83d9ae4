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
	"github.com/avfleet/avfleet/internal/mirror/api"
)

// A published set is sets/<generation>/: hard links to history files under
// the names clients ask for, plus index.json. data_dir/verified is a symbolic
// link to the current one, replaced by rename.

const (
	setsDirName  = "sets"
	verifiedLink = "verified"
	indexName    = "index.json"
	// keepOldSets and oldSetGrace keep superseded sets on disk a while, so a
	// daemon that has not yet noticed a publish by a CLI command can still
	// open the files its index names.
	keepOldSets = 2
	oldSetGrace = 2 * time.Minute
)

// servedFile is one file of a published set.
type servedFile struct {
	Name     string    `json:"name"`
	Database string    `json:"database"`
	Kind     string    `json:"kind"` // cvd, cld, cud, cdiff, sign
	Version  uint      `json:"version"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	ModTime  time.Time `json:"mod_time"`
}

// setIndex is index.json.
type setIndex struct {
	Generation  uint64         `json:"generation"`
	PublishedAt time.Time      `json:"published_at"`
	Databases   []api.Database `json:"databases"`
	Files       []servedFile   `json:"files"`
}

// servedSet is a loaded published set.
type servedSet struct {
	dir          string
	index        setIndex
	files        map[string]*servedFile
	manifest     api.Manifest
	manifestJSON []byte
}

func newServedSet(dir string, idx setIndex) *servedSet {
	s := &servedSet{dir: dir, index: idx, files: map[string]*servedFile{}}
	for i := range idx.Files {
		s.files[idx.Files[i].Name] = &idx.Files[i]
	}
	dbs := idx.Databases
	if dbs == nil {
		dbs = []api.Database{}
	}
	s.manifest = api.Manifest{ETag: api.ETagOf(dbs), Generation: idx.Generation, PublishedAt: idx.PublishedAt, Databases: dbs}
	s.manifestJSON, _ = json.MarshalIndent(s.manifest, "", "  ")
	s.manifestJSON = append(s.manifestJSON, '\n')
	return s
}

// emptySet is what is served before anything was ever verified.
func emptySet() *servedSet { return newServedSet("", setIndex{}) }

// loadCurrentSet follows data_dir/verified. It returns the empty set when the
// link does not exist yet.
func loadCurrentSet(dataDir string) (*servedSet, string, error) {
	link := filepath.Join(dataDir, verifiedLink)
	target, err := os.Readlink(link)
	if errors.Is(err, os.ErrNotExist) {
		return emptySet(), "", nil
	}
	if err != nil {
		if st, serr := os.Lstat(link); serr == nil && st.IsDir() {
			return nil, "", fmt.Errorf("%s is a directory, not the link avfleet maintains: move it away and restart", link)
		}
		return nil, "", fmt.Errorf("read link %s: %w", link, err)
	}
	dir := target
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(dataDir, dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, indexName))
	if err != nil {
		return nil, target, fmt.Errorf("read published set %s: %w", dir, err)
	}
	var idx setIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, target, fmt.Errorf("read published set %s: %s: %w", dir, indexName, err)
	}
	return newServedSet(dir, idx), target, nil
}

// plannedFile is a file of a set about to be published, and where it comes from.
type plannedFile struct {
	servedFile
	src string
}

// planSet decides what clients see: per database the pinned version or the
// newest, the newest full database at or below it as /{db}.cvd (or .cud), the
// CLD when that is older, and the cdiff chain ending at the served version.
func planSet(cat catalog, pins map[string]Pin, historyDir string, keepCDiffs int) ([]api.Database, []plannedFile) {
	var dbs []api.Database
	var files []plannedFile
	add := func(db string, dir string, m *fileMeta, served string, kind string) {
		files = append(files, plannedFile{
			servedFile: servedFile{Name: served, Database: db, Kind: kind, Version: m.Version, Size: m.Size, SHA256: m.SHA256, ModTime: m.modTime()},
			src:        filepath.Join(dir, m.Name),
		})
		if m.Sign != "" {
			files = append(files, plannedFile{
				servedFile: servedFile{Name: signName(db, m), Database: db, Kind: "sign", Version: m.Version, Size: m.SignSize, SHA256: m.SignSHA256, ModTime: m.AcceptedAt},
				src:        filepath.Join(dir, m.Sign),
			})
		}
	}
	for _, name := range cat.names() {
		h := cat[name]
		target := h.newest()
		pin, pinned := pins[name]
		if pinned && h.versions[pin.Version].database() != nil {
			target = pin.Version
		} else {
			pinned = false
		}
		top := h.versions[target].database()
		if top == nil {
			continue
		}
		md := api.Database{Name: name, Version: target, Kind: string(top.Kind), Size: top.Size, SHA256: top.SHA256, SignedBy: top.SignedBy,
			Held: pinned && pin.Kind == "hold", RolledBack: pinned && pin.Kind == "rollback", CDiffFiles: []api.CDiffFile{}}
		if top.Header != nil {
			md.BuildTime, md.BuildTimeHeader, md.Sigs, md.FLevel = headerTime(*top.Header), top.Header.BuildTime, top.Header.Sigs, top.Header.FLevel
		}
		full := h.newestFull(target)
		if full != nil {
			served := name + "." + string(full.Kind)
			add(name, versionDir(historyDir, name, full.Version), full, served, string(full.Kind))
			md.FullVersion, md.FullPath, md.FullSize, md.FullSHA256 = full.Version, "/"+served, full.Size, full.SHA256
			if full.Sign != "" {
				md.FullSignPath = "/" + signName(name, full)
			}
		}
		if top == full {
			md.Path, md.SignPath = md.FullPath, md.FullSignPath
		} else {
			served := name + ".cld"
			add(name, versionDir(historyDir, name, target), top, served, "cld")
			md.Path = "/" + served
			if full != nil && top.SignedBy == "" {
				md.SignedBy = full.SignedBy
			}
		}
		// The cdiff chain ending at the served version, newest first until a gap.
		var chain []*fileMeta
		for v := target; v > 0 && len(chain) < keepCDiffs; v-- {
			f := h.versions[v]
			if f == nil || f.cdiff == nil {
				break
			}
			chain = append(chain, f.cdiff)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			c := chain[i]
			add(name, versionDir(historyDir, name, c.Version), c, c.Name, "cdiff")
			cf := api.CDiffFile{Version: c.Version, Path: "/" + c.Name, Size: c.Size, SHA256: c.SHA256}
			if c.Sign != "" {
				cf.SignPath = "/" + signName(name, c)
			}
			md.CDiffFiles = append(md.CDiffFiles, cf)
		}
		if len(chain) > 0 {
			md.CDiffs = &api.CDiffRange{From: chain[len(chain)-1].Version, To: chain[0].Version}
		}
		dbs = append(dbs, md)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return dbs, files
}

// signName is the served name of the .sign of m: {db}-{version}.cvd.sign,
// {db}-{n}.cdiff.sign (what freshclam 1.5 asks for).
func signName(db string, m *fileMeta) string {
	if m.Kind == cvd.KindCDiff {
		return m.Name + ".sign"
	}
	return fmt.Sprintf("%s-%d.%s.sign", db, m.Version, m.Kind)
}

// sameFiles reports whether a planned set equals a published one.
func sameFiles(cur *servedSet, dbs []api.Database, files []plannedFile) bool {
	if cur == nil || cur.dir == "" || len(cur.files) != len(files) {
		return false
	}
	want := dbs
	if want == nil {
		want = []api.Database{}
	}
	if api.ETagOf(want) != cur.manifest.ETag {
		return false
	}
	for _, f := range files {
		c := cur.files[f.Name]
		if c == nil || c.SHA256 != f.SHA256 || c.Size != f.Size {
			return false
		}
	}
	return true
}

// writeSet creates sets/<gen>/, fills it, and switches data_dir/verified to it.
func writeSet(dataDir string, gen uint64, now time.Time, dbs []api.Database, files []plannedFile) (*servedSet, error) {
	setsDir := filepath.Join(dataDir, setsDirName)
	name := strconv.FormatUint(gen, 10)
	tmp := filepath.Join(setsDir, tempPrefix+name+"-"+randomSuffix())
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", tmp, err)
	}
	fail := func(err error) (*servedSet, error) {
		os.RemoveAll(tmp)
		return nil, err
	}
	idx := setIndex{Generation: gen, PublishedAt: now.UTC().Truncate(time.Second), Databases: dbs}
	for _, f := range files {
		if err := os.Link(f.src, filepath.Join(tmp, f.Name)); err != nil {
			if _, cerr := copyAtomic(filepath.Join(tmp, f.Name), f.src); cerr != nil {
				return fail(fmt.Errorf("publish %s: %w", f.Name, cerr))
			}
		}
		idx.Files = append(idx.Files, f.servedFile)
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(filepath.Join(tmp, indexName), append(b, '\n'), 0o644); err != nil {
		return fail(err)
	}
	if err := fsutil.SyncDir(tmp); err != nil {
		return fail(err)
	}
	final := filepath.Join(setsDir, name)
	os.RemoveAll(final) // a leftover of a crash between here and the link switch
	if err := os.Rename(tmp, final); err != nil {
		return fail(fmt.Errorf("publish set %s: %w", final, err))
	}
	if err := fsutil.SyncDir(setsDir); err != nil {
		return nil, err
	}
	link := filepath.Join(dataDir, tempPrefix+"verified-"+randomSuffix())
	if err := os.Symlink(filepath.Join(setsDirName, name), link); err != nil {
		return nil, fmt.Errorf("publish set %s: %w", final, err)
	}
	if err := os.Rename(link, filepath.Join(dataDir, verifiedLink)); err != nil {
		os.Remove(link)
		return nil, fmt.Errorf("publish set %s: switch %s: %w", final, verifiedLink, err)
	}
	if err := fsutil.SyncDir(dataDir); err != nil {
		return nil, err
	}
	return newServedSet(final, idx), nil
}

// setGenerations lists the numbered sets, ascending.
func setGenerations(dataDir string) ([]uint64, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, setsDirName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dataDir, setsDirName), err)
	}
	var out []uint64
	for _, e := range ents {
		if g, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && e.IsDir() {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// pruneSets removes superseded sets beyond keepOldSets that are older than
// oldSetGrace, and temporary set directories (the caller holds the lock).
func pruneSets(dataDir, current string, now time.Time) {
	setsDir := filepath.Join(dataDir, setsDirName)
	_ = removeStaleTemps(setsDir, 0)
	gens, err := setGenerations(dataDir)
	if err != nil {
		return
	}
	cur := filepath.Base(current)
	kept := 0
	for i := len(gens) - 1; i >= 0; i-- {
		name := strconv.FormatUint(gens[i], 10)
		if name == cur {
			continue
		}
		dir := filepath.Join(setsDir, name)
		st, err := os.Stat(dir)
		if kept < keepOldSets || err == nil && now.Sub(st.ModTime()) < oldSetGrace {
			kept++
			continue
		}
		os.RemoveAll(dir)
	}
}

// planPrune lists the history files retention lets go: full files of all
// but the newest `versions` versions, cdiffs beyond the newest `cdiffs`,
// except anything the published set uses or a pin needs, and the newest full
// database (the version rule compares against it).
func planPrune(cat catalog, pins map[string]Pin, published []plannedFile, historyDir string, versions, cdiffs int) []struct {
	dir string
	m   *fileMeta
} {
	inUse := map[string]bool{}
	for _, f := range published {
		inUse[f.src] = true
	}
	var out []struct {
		dir string
		m   *fileMeta
	}
	for _, name := range cat.names() {
		h := cat[name]
		keep := func(m *fileMeta) bool {
			return inUse[filepath.Join(versionDir(historyDir, name, m.Version), m.Name)]
		}
		pin, pinned := pins[name]
		// The full database under every kept version stays too: a rollback
		// to a kept version must still be able to serve /{db}.cvd.
		bases := map[*fileMeta]bool{h.newestFull(^uint(0)): true}
		n := 0
		for _, v := range h.sortedVersions() {
			if h.versions[v].database() != nil && (n < versions || pinned && pin.Version == v) {
				bases[h.newestFull(v)] = true
			}
			if h.versions[v].database() != nil {
				n++
			}
		}
		nVersions, nCDiffs := 0, 0
		for _, v := range h.sortedVersions() {
			f := h.versions[v]
			dir := versionDir(historyDir, name, v)
			if f.database() != nil {
				nVersions++
			}
			for _, m := range []*fileMeta{f.full, f.cld} {
				if m == nil {
					continue
				}
				if nVersions <= versions || keep(m) || bases[m] || pinned && pin.Version == v {
					continue
				}
				out = append(out, struct {
					dir string
					m   *fileMeta
				}{dir, m})
			}
			if m := f.cdiff; m != nil {
				nCDiffs++
				if nCDiffs <= cdiffs || keep(m) {
					continue
				}
				out = append(out, struct {
					dir string
					m   *fileMeta
				}{dir, m})
			}
		}
	}
	return out
}

// isServableName reports whether name could be a served file (a cheap filter
// before the map lookup, and a guard against paths).
func isServableName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/\\") && !strings.HasPrefix(name, ".") && name != indexName
}
