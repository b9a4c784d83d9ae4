package updater

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestStoreRecover: whatever a killed agent left (a set half built, a
// symlink half swapped, a partial download, a set never activated), the next
// Lock clears it and db still names the complete set it named before.
func TestStoreRecover(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	install := func(n uint) *Set {
		b, err := s.NewBuild()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.WriteFile("test.cvd", testdata(t, "test-"+itoa(int(n))+".cvd")); err != nil {
			t.Fatal(err)
		}
		set, err := b.Commit()
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	first := install(3)
	if err := s.Activate(first); err != nil {
		t.Fatal(err)
	}
	second := install(4)
	if err := s.Activate(second); err != nil {
		t.Fatal(err)
	}
	orphan := install(5) // committed, never activated: the agent died here

	// Leftovers of a run killed at other moments.
	half, _ := s.NewBuild()
	os.WriteFile(half.Path("test.cld"), []byte("ClamAV-VDB:half"), 0o644)
	os.Symlink(filepath.Join(setsDir, "999999"), filepath.Join(dir, "db.new"))
	os.WriteFile(filepath.Join(dir, downloadDir, "test-6.cdiff"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(dir, "."+pendingFile+".tmp-123"), []byte(`{"set":`), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "."+pendingFile+".tmp-123"), old, old)

	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	sets, _ := s.Sets()
	if want := []string{first.Name, second.Name}; !slices.Equal(sets, want) {
		t.Errorf("sets after recovery %v, want %v (the orphan %s and the half-built set removed)", sets, want, orphan.Name)
	}
	cur, err := s.Current()
	if err != nil || cur.Name != second.Name || cur.Versions()["test"] != 4 {
		t.Fatalf("current %+v, %v", cur, err)
	}
	prev, err := s.Previous()
	if err != nil || prev.Name != first.Name {
		t.Fatalf("previous %+v, %v", prev, err)
	}
	for _, p := range []string{"db.new", filepath.Join(downloadDir, "test-6.cdiff"), "." + pendingFile + ".tmp-123"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s survived recovery", p)
		}
	}
	// A new set is named after the sets db and prev point to.
	next, err := s.NewBuild()
	if err != nil {
		t.Fatal(err)
	}
	next.WriteFile("test.cvd", testdata(t, "test-6.cvd"))
	set, err := next.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if set.Name <= second.Name {
		t.Errorf("new set %s not after %s", set.Name, second.Name)
	}
}

func TestStoreRejectsForeignSymlink(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Symlink("/var/lib/clamav", filepath.Join(dir, "db"))
	if _, err := s.Current(); err == nil {
		t.Fatal("a db symlink not made by avfleet was accepted")
	}
}
