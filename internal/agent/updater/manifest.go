package updater

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/avfleet/avfleet/internal/mirror/api"
)

// The manifest's types are the mirror's own (internal/mirror/api depends on
// nothing but the standard library, so the agent does not pull in the
// mirror's store); unknown fields are ignored, as docs/api.md promises.
type (
	Manifest   = api.Manifest
	ManifestDB = api.Database
	CDiffRange = api.CDiffRange
	CDiffFile  = api.CDiffFile
)

// maxManifestBytes bounds what the agent reads as a manifest: a few hundred
// bytes per database, so 4 MiB is generous and still cheap.
const maxManifestBytes = 4 << 20

var (
	dbNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// A file path the agent will request: one plain name under the root.
	filePathRe = regexp.MustCompile(`^/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// DecodeManifest reads and checks a manifest. Everything in it comes from
// the network, so names and paths are checked before they are used to build
// URLs and file names; hashes and signatures are checked later, on the files.
func DecodeManifest(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("manifest: larger than %d bytes", maxManifestBytes)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: not the JSON of docs/api.md: %w", err)
	}
	if err := validateManifest(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}

func validateManifest(m *Manifest) error {
	if m.ETag == "" || strings.ContainsAny(m.ETag, "\"\r\n ") || len(m.ETag) > 128 {
		return fmt.Errorf("etag %q is empty or not a plain token", m.ETag)
	}
	seen := map[string]bool{}
	for i := range m.Databases {
		d := &m.Databases[i]
		if !dbNameRe.MatchString(d.Name) {
			return fmt.Errorf("database %d: name %q is not a database name", i, d.Name)
		}
		if seen[d.Name] {
			return fmt.Errorf("database %s: listed twice", d.Name)
		}
		seen[d.Name] = true
		if err := validateDB(d); err != nil {
			return fmt.Errorf("database %s: %w", d.Name, err)
		}
	}
	return nil
}

func validateDB(d *ManifestDB) error {
	switch d.Kind {
	case "cvd", "cld", "cud":
	default:
		return fmt.Errorf("kind %q is not cvd, cld or cud", d.Kind)
	}
	if d.Version == 0 {
		return fmt.Errorf("version 0")
	}
	if err := checkFile(d.Path, d.Size, d.SHA256, true); err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if err := checkOptionalPath(d.SignPath); err != nil {
		return fmt.Errorf("sign_path: %w", err)
	}
	if d.FullPath != "" {
		if err := checkFile(d.FullPath, d.FullSize, d.FullSHA256, true); err != nil {
			return fmt.Errorf("full_path: %w", err)
		}
		if err := checkOptionalPath(d.FullSignPath); err != nil {
			return fmt.Errorf("full_sign_path: %w", err)
		}
	}
	if d.CDiffs != nil {
		if d.CDiffs.From == 0 || d.CDiffs.From > d.CDiffs.To {
			return fmt.Errorf("cdiffs: range %d..%d is empty", d.CDiffs.From, d.CDiffs.To)
		}
		if d.CDiffs.To-d.CDiffs.From > 10000 {
			return fmt.Errorf("cdiffs: range %d..%d is implausibly long", d.CDiffs.From, d.CDiffs.To)
		}
	}
	for j, c := range d.CDiffFiles {
		if c.Version == 0 {
			return fmt.Errorf("cdiff_files[%d]: version 0", j)
		}
		if err := checkFile(c.Path, c.Size, c.SHA256, true); err != nil {
			return fmt.Errorf("cdiff_files[%d]: %w", j, err)
		}
		if err := checkOptionalPath(c.SignPath); err != nil {
			return fmt.Errorf("cdiff_files[%d].sign_path: %w", j, err)
		}
	}
	return nil
}

func checkFile(path string, size int64, sum string, required bool) error {
	if path == "" && !required {
		return nil
	}
	if !filePathRe.MatchString(path) {
		return fmt.Errorf("%q is not a plain /name", path)
	}
	if size <= 0 {
		return fmt.Errorf("%s: size %d", path, size)
	}
	if !sha256Re.MatchString(sum) {
		return fmt.Errorf("%s: sha256 %q is not 64 lowercase hex digits", path, sum)
	}
	return nil
}

func checkOptionalPath(p string) error {
	if p == "" || filePathRe.MatchString(p) {
		return nil
	}
	return fmt.Errorf("%q is not a plain /name", p)
}

// findDB returns the entry named name, or nil.
func findDB(m *Manifest, name string) *ManifestDB {
	for i := range m.Databases {
		if m.Databases[i].Name == name {
			return &m.Databases[i]
		}
	}
	return nil
}

// cdiffChain returns the cdiff files that take version from to d.Version, in
// order, or nil when the mirror does not hold that whole chain.
func cdiffChain(d *ManifestDB, from uint) []CDiffFile {
	if d.CDiffs == nil || from >= d.Version || d.CDiffs.To != d.Version || d.CDiffs.From > from+1 {
		return nil
	}
	byVersion := make(map[uint]CDiffFile, len(d.CDiffFiles))
	for _, c := range d.CDiffFiles {
		byVersion[c.Version] = c
	}
	var chain []CDiffFile
	for v := from + 1; v <= d.Version; v++ {
		c, ok := byVersion[v]
		if !ok {
			return nil
		}
		chain = append(chain, c)
	}
	return chain
}
