package mirror

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// Every file the mirror writes goes through these helpers: a temporary name in
// the same directory, fsync, rename, fsync of the directory. A reader (or a
// restart after a crash) sees the old content or the new, never a part.

// tempPrefix starts every temporary name. The incoming/ scanner skips names
// starting with "." so a file being copied in is never picked up half-written.
const tempPrefix = ".tmp-"

// isTempName reports whether name is a file still being written by someone:
// ours (".tmp-..."), any hidden file, or the usual partial-download suffixes.
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") ||
		strings.HasSuffix(name, ".part") || strings.HasSuffix(name, "~")
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeAtomic writes what r yields to path atomically and returns the byte count.
func writeAtomic(path string, r io.Reader, perm os.FileMode) (int64, error) {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, tempPrefix+filepath.Base(path)+"-"+randomSuffix())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return n, fmt.Errorf("write %s: %w", path, err)
	}
	return n, fsutil.SyncDir(dir)
}

// writeFileAtomic is writeAtomic for bytes.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	_, err := writeAtomic(path, strings.NewReader(string(data)), perm)
	return err
}

// copyAtomic copies the regular file src to dst atomically.
func copyAtomic(dst, src string) (int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", src, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", src, err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", src)
	}
	return writeAtomic(dst, f, 0o644)
}

// linkAtomic makes dst a hard link to src (replacing dst if it exists), via a
// temporary name so dst is never missing or partial. Files are only ever
// replaced, never modified in place, so sharing an inode is safe. It falls
// back to a copy where hard links are not possible.
func linkAtomic(dst, src string) error {
	dir := filepath.Dir(dst)
	tmp := filepath.Join(dir, tempPrefix+filepath.Base(dst)+"-"+randomSuffix())
	if err := os.Link(src, tmp); err != nil {
		if _, cerr := copyAtomic(dst, src); cerr != nil {
			return fmt.Errorf("link %s to %s: %v; copy: %w", src, dst, err, cerr)
		}
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s to %s: %w", tmp, dst, err)
	}
	return nil
}

// removeStaleTemps deletes our temporary files in dir older than minAge:
// leftovers of a process that died while writing. Callers hold the pipeline
// lock; minAge protects writers that do not take it (PutIncoming).
func removeStaleTemps(dir string, minAge time.Duration) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		if minAge > 0 {
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < minAge {
				continue
			}
		}
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	return nil
}

// fileSHA256 returns the size and lowercase hex SHA-256 of a file.
func fileSHA256(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
