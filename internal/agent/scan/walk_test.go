//go:build linux

package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
	"github.com/avfleet/avfleet/internal/report"
)

// collector gathers what a scan tells OnFile.
type collector struct {
	mu     sync.Mutex
	events []FileEvent
}

func (c *collector) add(ev FileEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, ev)
}

// byReason maps reason -> sorted paths; detections are under "FOUND:<sig>".
func (c *collector) byReason() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]string{}
	for _, e := range c.events {
		k := e.Reason
		if e.Signature != "" {
			k = "FOUND:" + e.Signature
		}
		p := e.Path
		if e.ContainerPath != "" {
			p = e.ContainerPath
		}
		out[k] = append(out[k], p)
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fakeScanner(t *testing.T, c Config) (*Scanner, *clamdtest.Server) {
	t.Helper()
	srv := clamdtest.NewUnix(t)
	cl, err := clamd.NewClient(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Engine = ClamdEngine(cl)
	if c.Workers == 0 {
		c.Workers = 3
	}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, srv
}

// TestWalkOddFiles builds a tree holding everything a walk must survive and
// scans it with the real clamd: each is counted with its reason, nothing is
// followed out of the tree (the EICAR the links point to is not found), a
// FIFO does not block, the 3 GB sparse file is not read, and every regular
// file is scanned once.
func TestWalkOddFiles(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	write(t, filepath.Join(outside, "eicar.com"), clamdtest.EICAR)
	write(t, filepath.Join(root, "clean.txt"), []byte("hello"))
	write(t, filepath.Join(root, "sub", "deep", "virus.com"), clamdtest.EICAR)
	write(t, filepath.Join(root, "sub", "gone.txt"), []byte("deleted before it is opened"))
	write(t, filepath.Join(root, "skipme", "eicar.com"), clamdtest.EICAR)
	write(t, filepath.Join(root, "a"), []byte("one file, two names"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Link(filepath.Join(root, "a"), filepath.Join(root, "b")))
	must(os.Symlink("loop2", filepath.Join(root, "loop1")))
	must(os.Symlink("loop1", filepath.Join(root, "loop2")))
	must(os.Symlink(".", filepath.Join(root, "sub", "self")))
	must(os.Symlink(outside, filepath.Join(root, "outdir")))
	must(os.Symlink(filepath.Join(outside, "eicar.com"), filepath.Join(root, "outfile")))
	must(os.Symlink("/etc/shadow", filepath.Join(root, "shadow")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	ln, err := net.Listen("unix", filepath.Join(root, "sock"))
	must(err)
	defer ln.Close()
	sparse, err := os.Create(filepath.Join(root, "sparse.img"))
	must(err)
	must(sparse.Truncate(3 << 30))
	sparse.Close()

	s := realScanner(t, clamdtest.StartReal(t, clamdtest.RealOptions{}), Config{Exclude: []string{"/skipme/"}})
	s.beforeOpen = func(p string) {
		if strings.HasSuffix(p, "/gone.txt") {
			os.Remove(p)
		}
	}
	var col collector
	sum, err := s.Run(context.Background(), Options{Paths: []string{root}, OnFile: col.add})
	if err != nil {
		t.Fatal(err)
	}
	got := col.byReason()
	want := map[string][]string{
		"FOUND:Eicar-Test-Signature": {root + "/sub/deep/virus.com"},
		ReasonSymlink:                {root + "/loop1", root + "/loop2", root + "/outdir", root + "/outfile", root + "/shadow", root + "/sub/self"},
		ReasonFIFO:                   {root + "/fifo"},
		ReasonSocket:                 {root + "/sock"},
		ReasonTooLarge:               {root + "/sparse.img"},
		ReasonExcluded:               {root + "/skipme"},
		ReasonVanished:               {root + "/sub/gone.txt"},
	}
	// One of the two names of the hard-linked file is scanned, the other skipped.
	if l := got[ReasonAlreadyScanned]; len(l) != 1 || (l[0] != root+"/a" && l[0] != root+"/b") {
		t.Errorf("already_scanned = %v, want one of a, b", l)
	}
	delete(got, ReasonAlreadyScanned)
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}
	if sum.Files != 3 || sum.Detections != 1 || sum.Result != report.ResultInfected || sum.Errors != 0 {
		t.Errorf("summary: files %d detections %d errors %d result %s; want 3 (clean.txt, virus.com, a|b), 1, 0, infected",
			sum.Files, sum.Detections, sum.Errors, sum.Result)
	}
	for k, v := range want {
		if k[0] != 'F' && sum.SkippedByReason[k] != int64(len(v)) {
			t.Errorf("summary skipped_by_reason[%s] = %d, want %d", k, sum.SkippedByReason[k], len(v))
		}
	}
}

func TestProgressAndBusy(t *testing.T) {
	base := t.TempDir()
	var size int64
	for i := range 50 {
		b := bytes.Repeat([]byte("p"), i*10)
		size += int64(len(b))
		write(t, filepath.Join(base, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%d", i)), b)
	}
	s, srv := fakeScanner(t, Config{Workers: 2})
	var mu sync.Mutex
	var last Progress
	calls := 0
	sum, err := s.Run(context.Background(), Options{Paths: []string{base}, Count: true, ProgressEvery: time.Millisecond,
		Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			last = p
		}})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last.TotalFiles != 50 || last.TotalBytes != size || last.DoneFiles != 50 || last.DoneBytes != size || last.Files != 50 {
		t.Errorf("last progress %+v after %d calls; want 50 files, %d bytes, all done", last, calls, size)
	}
	if sum.Files != 50 || sum.Bytes != size {
		t.Errorf("summary %d files %d bytes", sum.Files, sum.Bytes)
	}
	if n := len(srv.Requests()); n < 50 {
		t.Errorf("clamd got %d requests for 50 files", n)
	}

	// A second Run while one is going returns ErrBusy.
	srv.Handle("FILDES", func(req clamdtest.Request) clamdtest.Response {
		return clamdtest.Response{Replies: []string{fmt.Sprintf("fd[%d]: OK", req.FD)}, Delay: 50 * time.Millisecond}
	})
	started := make(chan struct{})
	var once sync.Once
	go s.Run(context.Background(), Options{Paths: []string{base}, OnFile: nil, ProgressEvery: time.Millisecond,
		Progress: func(Progress) { once.Do(func() { close(started) }) }})
	<-started
	if _, err := s.Run(context.Background(), Options{Paths: []string{base}}); !errors.Is(err, ErrBusy) {
		t.Errorf("second Run: %v, want ErrBusy", err)
	}
	for !s.busy.TryLock() {
		time.Sleep(10 * time.Millisecond)
	}
	s.busy.Unlock()
}

func TestClamdGoneFailsTheScan(t *testing.T) {
	base := t.TempDir()
	write(t, filepath.Join(base, "f"), []byte("x"))
	s, srv := fakeScanner(t, Config{})
	s.clamdWait = 2 * time.Second
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := s.Run(ctx, Options{Paths: []string{base}})
	if err == nil || sum.Result != report.ResultError || !strings.Contains(sum.Error, "cannot reach clamd") {
		t.Errorf("scan without clamd: %v, %+v", err, sum)
	}
}
