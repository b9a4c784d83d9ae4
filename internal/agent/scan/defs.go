package scan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Definitions reads the database directory clamd loads (state_dir/db in
// managed mode, a symlink to the installed set) and returns a key that
// changes whenever anything clamd would load changes (the resolved set
// directory, every file's name, size and mtime, the content of small files
// such as the allowlists), and the version of each CVD/CLD/CUD database.
// Pass the key as Options.Definitions only once clamd has loaded that set:
// a key naming definitions clamd has not loaded yet would let files pass as
// clean under definitions that never scanned them.
func Definitions(dbDir string) (key string, versions map[string]uint, err error) {
	real, err := filepath.EvalSymlinks(dbDir)
	if err != nil {
		return "", nil, fmt.Errorf("read definitions in %s: %w", dbDir, err)
	}
	ents, err := os.ReadDir(real)
	if err != nil {
		return "", nil, fmt.Errorf("read definitions in %s: %w", dbDir, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", real)
	versions = map[string]uint{}
	for _, e := range ents { // ReadDir sorts by name
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fmt.Fprintf(h, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		p := filepath.Join(real, e.Name())
		ext := filepath.Ext(e.Name())
		switch {
		case ext == ".cvd" || ext == ".cld" || ext == ".cud":
			if v, ok := headerVersion(p); ok {
				versions[strings.TrimSuffix(e.Name(), ext)] = v
			}
		case fi.Size() <= 1<<20:
			if b, err := os.ReadFile(p); err == nil {
				h.Write(b)
			}
		}
	}
	if len(versions) == 0 && len(ents) == 0 {
		return "", nil, fmt.Errorf("read definitions in %s: the directory is empty", dbDir)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], versions, nil
}

// DefinitionsKey is the incremental cache's key for the definitions in dbDir
// as run by a clamd whose VERSION reply is clamdVersion: Definitions' key
// with the reply added, so that the key changes again once clamd has
// reloaded (the daily version in the reply moves), and the agent's scans and
// `avfleet scan` share one cache. loaded reports whether the set on disk is
// the one clamd runs, as far as the reply tells (its daily version, when it
// names one); scan with incremental off while it is not.
func DefinitionsKey(dbDir, clamdVersion string) (key string, versions map[string]uint, loaded bool, err error) {
	k, versions, err := Definitions(dbDir)
	if err != nil {
		return "", nil, false, err
	}
	loaded = true
	// "ClamAV 1.4.6/27500/Tue Jan 14 ..." names the daily version.
	if parts := strings.Split(clamdVersion, "/"); len(parts) >= 2 {
		if d, err := strconv.ParseUint(parts[1], 10, 32); err == nil {
			if v, ok := versions["daily"]; ok && uint(d) != v {
				loaded = false
			}
		}
	}
	return k + "|" + clamdVersion, versions, loaded, nil
}

// headerVersion reads the version from a ClamAV database's 512-byte header:
// "ClamAV-VDB:build time:version:signatures:f-level:md5:dsig:builder:stime".
func headerVersion(path string) (uint, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var b [512]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, false
	}
	return parseHeaderVersion(b[:])
}

func parseHeaderVersion(b []byte) (uint, bool) {
	if !bytes.HasPrefix(b, []byte("ClamAV-VDB:")) {
		return 0, false
	}
	fields := strings.Split(string(bytes.TrimRight(b, " \x00")), ":")
	if len(fields) < 3 {
		return 0, false
	}
	v, err := strconv.ParseUint(fields[2], 10, 32)
	if err != nil {
		return 0, false
	}
	return uint(v), true
}
