//go:build unix

package clamd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestRealClamdPipeline keeps several FILDES requests in flight on one
// Pipeline and matches every reply to its file by id.
func TestRealClamdPipeline(t *testing.T) {
	testutil.NeedFile(t, clamExe)
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	dir := t.TempDir()
	files := map[string]string{
		eicarFile(t, dir): "Eicar-Test-Signature",
		clamExe:           "Clamav.Test.File-6",
	}
	for i := range 30 {
		files[writeFile(t, dir, "clean"+string(rune('a'+i)), bytes.Repeat([]byte{byte(i)}, 3000*i))] = ""
	}
	c, err := clamd.NewClient(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 20*time.Second)
	p, err := c.Pipeline(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const inFlight = 3
	pending := map[int]*os.File{}
	got := map[string]string{}
	recv := func() {
		id, reply, err := p.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f := pending[id]
		if f == nil {
			t.Fatalf("reply %q under id %d, which was not sent or already answered", reply, id)
		}
		delete(pending, id)
		res, err := p.FildesResult(reply, f.Name())
		if err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		got[res.Path] = res.Signature
		f.Close()
	}
	for path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		id, err := p.SendFD(ctx, int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		pending[id] = f
		if len(pending) >= inFlight {
			recv()
		}
	}
	for len(pending) > 0 {
		recv()
	}
	for path, sig := range files {
		if s, ok := got[path]; !ok || s != sig {
			t.Errorf("%s: got %q (reported %v), want %q", filepath.Base(path), s, ok, sig)
		}
	}
	// A cancelled context ends a Recv that waits for a reply that never comes.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := p.Recv(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Recv with a cancelled context and nothing owed: %v, want context.Canceled", err)
	}
}

func TestPipelineNeedsUnixSocket(t *testing.T) {
	c, err := clamd.NewClient("tcp://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pipeline(t.Context()); err == nil {
		t.Fatal("Pipeline over TCP: no error")
	}
}

// heldServer is a clamd stand-in that accepts one connection, reads what
// the client sends and answers "1: fd[N]: OK" only when release is closed.
func heldServer(t *testing.T) (c *clamd.Client, release chan struct{}) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "clamd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	release = make(chan struct{})
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		go io.Copy(io.Discard, conn) // the commands and the descriptor's byte
		<-release
		conn.Write([]byte("1: fd[10]: OK\x00"))
		<-stop // the connection stays open, silent
	}()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		select {
		case <-release:
		default:
			close(release)
		}
		<-done
	})
	c, err = clamd.NewClient("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	return c, release
}

// TestPipelineWaitLetsTheRuntimeRun: while Recv waits for clamd (on Linux,
// in ppoll outside the runtime's poller) the garbage collector, timers and
// other goroutines still run, with one processor or more; and a context
// cancelled during the wait ends it. A wait that kept the world from
// stopping would hang this test (with one processor even its own timer
// cannot fire); go test's -timeout ends it then.
func TestPipelineWaitLetsTheRuntimeRun(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			c, release := heldServer(t)
			ctx := ctxT(t, 30*time.Second)
			p, err := c.Pipeline(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			f, err := os.Open(writeFile(t, t.TempDir(), "f", []byte("clean")))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := p.SendFD(ctx, int(f.Fd())); err != nil {
				t.Fatal(err)
			}
			type reply struct {
				id   int
				text string
				err  error
			}
			got := make(chan reply, 1)
			waiting := make(chan struct{})
			go func() {
				close(waiting)
				id, text, err := p.Recv(ctx)
				got <- reply{id, text, err}
			}()
			<-waiting
			time.Sleep(50 * time.Millisecond) // Recv is (most likely) in its wait now
			gcDone := make(chan struct{})
			go func() {
				runtime.GC() // stops the world: the waiting goroutine too
				time.Sleep(10 * time.Millisecond)
				close(gcDone)
			}()
			select {
			case <-gcDone:
			case r := <-got:
				t.Fatalf("Recv returned before any reply was sent: %+v", r)
			case <-time.After(20 * time.Second):
				close(release)
				t.Fatal("a garbage collection did not finish in 20 s while Recv waited for clamd")
			}
			close(release)
			r := <-got
			if r.err != nil || r.id != 1 || r.text != "fd[10]: OK" {
				t.Fatalf("Recv = %d %q %v, want 1 \"fd[10]: OK\" <nil>", r.id, r.text, r.err)
			}

			// Nothing more is owed: a context cancelled mid-wait ends Recv.
			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(50*time.Millisecond, cancel)
			if _, _, err := p.Recv(cctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Recv cancelled while waiting: %v, want context.Canceled", err)
			}
		})
	}
}
