package mirror

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
)

// event is one struct inotify_event with its name padded to pad bytes.
func event(name string, pad int) []byte {
	b := make([]byte, unix.SizeofInotifyEvent+pad)
	binary.NativeEndian.PutUint32(b[4:8], unix.IN_MOVED_TO)
	binary.NativeEndian.PutUint32(b[12:16], uint32(pad))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

func TestInotifyNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		buf  []byte
		want []string
	}{
		{"one", event("verified", 16), []string{"verified"}},
		{"two", append(event(".verified.tmp", 16), event("verified", 16)...), []string{".verified.tmp", "verified"}},
		{"no name", event("", 0), []string{""}},
		{"truncated header", event("verified", 16)[:10], nil},
		{"length past the end", event("verified", 16)[:unix.SizeofInotifyEvent+8], nil},
		{"empty", nil, nil},
	} {
		if got := inotifyNames(tc.buf); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func FuzzInotifyNames(f *testing.F) {
	f.Add(event("verified", 16))
	f.Add(append(event("a", 4), event("verified", 16)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		for _, n := range inotifyNames(b) {
			total += unix.SizeofInotifyEvent + len(n)
			if strings.HasSuffix(n, "\x00") {
				t.Fatalf("name %q keeps its padding", n)
			}
		}
		if total > len(b) {
			t.Fatalf("names longer than the buffer: %d > %d", total, len(b))
		}
	})
}

// TestWatchName: renaming a symlink over the watched name, as publishing a
// set does, is reported; other names are not.
func TestWatchName(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := watchName(ctx, dir, "verified")
	if ch == nil {
		t.Fatal("inotify unavailable")
	}
	if err := os.Symlink("sets/1", filepath.Join(dir, "other")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("a change to another name was reported")
	default:
	}
	tmp := filepath.Join(dir, ".verified.tmp")
	if err := os.Symlink("sets/2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "verified")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("renaming a link over verified was not reported in 10 s")
	}
}

// TestDaemonNoticesAnotherProcessAtOnce: a set published through another
// Store on the same data_dir (what `avfleet mirror import` run beside the
// daemon does) is served without waiting for the poll, which this test
// sets to an hour.
func TestDaemonNoticesAnotherProcessAtOnce(t *testing.T) {
	td := startDaemon(t, nil, func(_ *config.Mirror, o *DaemonOptions) { o.PollInterval = 2 * time.Hour })
	other, err := Open(Options{DataDir: td.cfg.DataDir, Verifier: &fakeVerifier{}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before := td.bc.load().manifest.ETag
	if _, err := other.Import(context.Background(), writeFiles(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for td.bc.load().manifest.ETag == before {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not serve a set another process published within 10 s (polling is off)")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
