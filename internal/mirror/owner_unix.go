//go:build unix

package mirror

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// RunAsDataDirOwner makes the process take the identity of the owner of
// dataDir when it runs as root and dataDir belongs to another user (the
// packaged daemon runs as "avfleet"). Every file the store then creates
// (the lock, state.db and its journal, new directories in history/ and
// sets/, temporary files) belongs to that user from the first byte, so a
// command run by root, even one killed halfway, never leaves the daemon a
// file it cannot write. Entries that earlier root runs left owned by root
// are given back to the owner first. When dataDir does not exist yet, its
// nearest existing parent decides.
//
// It returns the uid taken, or -1 when nothing changed (not root, or the
// owner is root), and how many entries were given back. Call it after reading everything only root may read
// (configuration, keys, files to import) and before opening the store.
func RunAsDataDirOwner(dataDir string) (uid int, fixed int, err error) {
	if os.Geteuid() != 0 {
		return -1, 0, nil
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return -1, 0, fmt.Errorf("data_dir %s: %w", dataDir, err)
	}
	dir := abs
	var st *syscall.Stat_t
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			st, _ = fi.Sys().(*syscall.Stat_t)
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(dir) == dir {
			return -1, 0, fmt.Errorf("data_dir %s: find its owner: %w", dataDir, err)
		}
		dir = filepath.Dir(dir)
	}
	if st == nil || st.Uid == 0 {
		return -1, 0, nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if dir == abs {
		if fixed, err = giveBack(dir, uid, gid); err != nil {
			return -1, fixed, err
		}
	}
	// Groups first (only root may), then the group, then the user; Go
	// applies each to every thread of the process.
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return -1, fixed, fmt.Errorf("run as the owner of data_dir %s (uid %d, gid %d): setgroups: %w", dataDir, uid, gid, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return -1, fixed, fmt.Errorf("run as the owner of data_dir %s (uid %d, gid %d): setgid: %w", dataDir, uid, gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return -1, fixed, fmt.Errorf("run as the owner of data_dir %s (uid %d, gid %d): setuid: %w", dataDir, uid, gid, err)
	}
	if os.Geteuid() != uid || os.Getegid() != gid {
		return -1, fixed, fmt.Errorf("run as the owner of data_dir %s (uid %d, gid %d): still uid %d gid %d", dataDir, uid, gid, os.Geteuid(), os.Getegid())
	}
	return uid, fixed, nil
}

// giveBack chowns to uid:gid every entry under dir that belongs to root:
// what root runs of versions without RunAsDataDirOwner left behind.
func giveBack(dir string, uid, gid int) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile (the daemon runs)
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
			if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("give %s back to the owner of data_dir (uid %d): %w", p, uid, err)
			}
			n++
		}
		return nil
	})
	return n, err
}

// foreignOwner returns the owner of dataDir when the process runs as root
// and dataDir belongs to another user, else -1.
func foreignOwner(dataDir string) int {
	if os.Geteuid() != 0 {
		return -1
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return int(st.Uid)
	}
	return -1
}
