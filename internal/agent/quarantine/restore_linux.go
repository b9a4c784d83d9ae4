package quarantine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Restore writes entry id back to where it was read (into the same container
// for a file from a container), byte-identical, with its owner, mode and
// modification time, then removes the entry. It never replaces a file: if
// something exists at the original path it returns ErrExists and changes
// nothing. It returns the path it restored to (container:path for a
// container).
func (s *Store) Restore(id string) (string, error) {
	m, err := s.Get(id)
	if err != nil {
		return "", err
	}
	mode, err := m.FileMode()
	if err != nil {
		return "", err
	}
	src, err := os.Open(s.DataPath(id))
	if err != nil {
		return "", fmt.Errorf("restore %s: %w", id, err)
	}
	defer src.Close()

	where, rel := m.Path, m.Path
	var root int
	if m.ContainerRoot != nil {
		where = m.Container + ":" + m.ContainerPath
		rel = m.ContainerPath
		root, err = openContainerRoot(m)
	} else {
		root, err = unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return "", fmt.Errorf("restore %s to %s: %w", id, where, err)
	}
	defer unix.Close(root)
	dir, name, err := openParent(root, rel)
	if err != nil {
		return "", fmt.Errorf("restore %s to %s: %w", id, where, err)
	}
	defer unix.Close(dir)
	var st unix.Stat_t
	if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return "", fmt.Errorf("restore %s to %s: %w (move it away first, then restore again)", id, where, ErrExists)
	}

	tmp := ".avfleet-restore-" + id
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", fmt.Errorf("restore %s: create %s beside %s: %w", id, tmp, where, err)
	}
	out := os.NewFile(uintptr(fd), tmp)
	done := false
	defer func() {
		out.Close()
		if !done {
			unix.Unlinkat(dir, tmp, 0)
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), src); err != nil {
		return "", fmt.Errorf("restore %s: write %s beside %s: %w", id, tmp, where, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return "", fmt.Errorf("restore %s: %s has SHA-256 %s, the entry recorded %s: %w; nothing restored", id, s.DataPath(id), got, m.SHA256, ErrDamaged)
	}
	// Owner first: chown clears set-id bits, the chmod after puts them back.
	if err := unix.Fchown(fd, m.UID, m.GID); err != nil {
		return "", fmt.Errorf("restore %s: set owner %d:%d: %w", id, m.UID, m.GID, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return "", fmt.Errorf("restore %s: set mode %s: %w", id, m.Mode, err)
	}
	if !m.MTime.IsZero() {
		ts := []unix.Timespec{unix.NsecToTimespec(m.MTime.UnixNano()), unix.NsecToTimespec(m.MTime.UnixNano())}
		if err := unix.UtimesNanoAt(dir, tmp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "", fmt.Errorf("restore %s: set mtime: %w", id, err)
		}
	}
	if err := out.Sync(); err != nil {
		return "", fmt.Errorf("restore %s: %w", id, err)
	}
	if err := renameNoReplace(dir, tmp, name); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return "", fmt.Errorf("restore %s to %s: %w (it appeared during the restore; nothing replaced)", id, where, ErrExists)
		}
		return "", fmt.Errorf("restore %s to %s: %w", id, where, err)
	}
	done = true
	unix.Fsync(dir)
	if err := s.Delete(id); err != nil {
		return where, fmt.Errorf("restored %s to %s, but could not remove the entry: %w", id, where, err)
	}
	return where, nil
}

// renameNoReplace renames old to new in dir, failing with EEXIST rather than
// replacing new. Filesystems without RENAME_NOREPLACE get link + unlink,
// which fails the same way.
func renameNoReplace(dir int, old, new string) error {
	err := unix.Renameat2(dir, old, dir, new, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	if err := unix.Linkat(dir, old, dir, new, 0); err != nil {
		return err
	}
	return unix.Unlinkat(dir, old, 0)
}

// openParent opens the directory holding rel (an absolute path below root),
// one component at a time, refusing symlinks and "..".
func openParent(root int, rel string) (dir int, name string, err error) {
	clean := filepath.Clean("/" + rel)
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	name = parts[len(parts)-1]
	if name == "" || name == "." || name == ".." {
		return -1, "", fmt.Errorf("%q names no file", rel)
	}
	dir, err = unix.Dup(root)
	if err != nil {
		return -1, "", err
	}
	for _, p := range parts[:len(parts)-1] {
		next, err := unix.Openat(dir, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(dir)
		if errors.Is(err, unix.ENOENT) {
			return -1, "", fmt.Errorf("directory %s: %w", p, ErrGone)
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, "", fmt.Errorf("%s is no longer a directory (a symlink or file now): %w", p, ErrRefused)
		}
		if err != nil {
			return -1, "", fmt.Errorf("open directory %s: %w", p, err)
		}
		dir = next
	}
	return dir, name, nil
}

// openContainerRoot finds a process whose root is still the container's
// (same mount namespace, same root directory) and opens that root.
func openContainerRoot(m Meta) (int, error) {
	want := *m.ContainerRoot
	try := func(pid int) (int, bool) {
		p := "/proc/" + strconv.Itoa(pid)
		var ns unix.Stat_t
		if unix.Stat(p+"/ns/mnt", &ns) != nil || ns.Ino != want.MntNS {
			return -1, false
		}
		fd, err := unix.Open(p+"/root", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, false
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Dev != want.Dev || st.Ino != want.Ino {
			unix.Close(fd)
			return -1, false
		}
		return fd, true
	}
	if m.ContainerPID > 0 {
		if fd, ok := try(m.ContainerPID); ok {
			return fd, nil
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if fd, ok := try(pid); ok {
				return fd, nil
			}
		}
	}
	return -1, fmt.Errorf("container %s is no longer running (no process has its root): %w; the file is kept in the quarantine", m.Container, ErrGone)
}
