package quarantine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

// quarantineFile writes content at path with owner and mode, puts it in the
// store the way a move action does, and removes the original.
func quarantineFile(t *testing.T, s *Store, path string, content []byte, uid, gid int, mode uint32) Meta {
	t.Helper()
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, os.FileMode(mode&0o777)|unixSpecial(mode)); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(3, 0) // Put must not depend on the file offset
	m, err := s.Put(f, Meta{Path: path, UID: uid, GID: gid, Mode: ModeString(mode), MTime: mtime, Signature: "Eicar-Test-Signature", Action: "move"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	return m
}

func unixSpecial(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

func TestPutListRestore(t *testing.T) {
	testutil.NeedRoot(t) // owners other than the test's own
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "q"))
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"), 100)
	orig := filepath.Join(dir, "tool")
	m := quarantineFile(t, s, orig, content, 1234, 2345, 0o4751)

	// At rest: 0700 directory, 0400 data, 0600 metadata, nothing executable.
	for p, want := range map[string]os.FileMode{s.Dir(): 0o700 | os.ModeDir, s.DataPath(m.ID): 0o400, s.MetaPath(m.ID): 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %s, want %s", p, fi.Mode(), want)
		}
	}
	if got, _ := os.ReadFile(s.DataPath(m.ID)); !bytes.Equal(got, content) {
		t.Error("quarantined bytes differ from the original")
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != m.ID || list[0].Size != int64(len(content)) || list[0].Mode != "4751" {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// A file that reappeared is never overwritten.
	os.WriteFile(orig, []byte("new"), 0o644)
	if _, err := s.Restore(m.ID); !errors.Is(err, ErrExists) {
		t.Fatalf("restore over an existing file: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(orig); string(b) != "new" {
		t.Fatal("the reappeared file was changed")
	}
	os.Remove(orig)

	where, err := s.Restore(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if where != orig {
		t.Errorf("restored to %s, want %s", where, orig)
	}
	got, _ := os.ReadFile(orig)
	if !bytes.Equal(got, content) {
		t.Error("restored bytes differ")
	}
	fi, _ := os.Lstat(orig)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 2345 || st.Mode&0o7777 != 0o4751 || !fi.ModTime().Equal(m.MTime) {
		t.Errorf("restored owner %d:%d mode %o mtime %s, want 1234:2345 4751 %s", st.Uid, st.Gid, st.Mode&0o7777, fi.ModTime(), m.MTime)
	}
	if _, err := s.Get(m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("entry still there after restore: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 2 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestRestoreRefusesSymlinkAndDamage(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "q"))
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	m := quarantineFile(t, s, filepath.Join(sub, "f"), []byte("data"), os.Getuid(), os.Getgid(), 0o644)
	// The directory is swapped for a symlink to elsewhere since the scan.
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	os.Remove(sub)
	os.Symlink(other, sub)
	if _, err := s.Restore(m.ID); !errors.Is(err, ErrRefused) {
		t.Fatalf("restore through a symlinked directory: %v", err)
	}
	if ents, _ := os.ReadDir(other); len(ents) != 0 {
		t.Fatalf("restore wrote through the symlink: %v", ents)
	}
	os.Remove(sub)
	os.Mkdir(sub, 0o755)
	// Damaged quarantine copy: nothing is restored.
	os.Chmod(s.DataPath(m.ID), 0o600)
	os.WriteFile(s.DataPath(m.ID), []byte("dat4"), 0o600)
	if _, err := s.Restore(m.ID); !errors.Is(err, ErrDamaged) {
		t.Fatalf("restore of a damaged copy: %v", err)
	}
	if ents, _ := os.ReadDir(sub); len(ents) != 0 {
		t.Fatalf("damaged restore left %v", ents)
	}
	// Gone directory.
	os.Remove(sub)
	if _, err := s.Restore(m.ID); !errors.Is(err, ErrGone) {
		t.Fatalf("restore into a removed directory: %v", err)
	}
	if _, err := s.Restore("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}

func TestOpenTightensMode(t *testing.T) {
	d := filepath.Join(t.TempDir(), "q")
	os.Mkdir(d, 0o755)
	if _, err := Open(d); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(d); fi.Mode().Perm() != 0o700 {
		t.Errorf("quarantine dir mode %s", fi.Mode())
	}
}
