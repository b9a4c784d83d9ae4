//go:build unix

package clamd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
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
		id, err := p.SendFD(int(f.Fd()))
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
