package clamd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
)

func TestSessionPipelinesOutOfOrder(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := newServer(t, network)
			// Clean files answer slowly, so replies come back out of order.
			s.Handle("FILDES", func(r clamdtest.Request) clamdtest.Response {
				return slowClean(r, fmt.Sprintf("fd[%d]", r.FD))
			})
			s.Handle("INSTREAM", func(r clamdtest.Request) clamdtest.Response { return slowClean(r, "stream") })
			ctx := ctxT(t, 10*time.Second)
			sess, err := newClient(t, s).Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var wg sync.WaitGroup
			errs := make(chan error, 30)
			for i := range 30 {
				data := []byte(fmt.Sprintf("clean %d", i))
				if i%3 == 0 {
					data = clamdtest.EICAR
				}
				p := writeFile(t, dir, fmt.Sprint(i), data)
				wg.Add(1)
				go func() {
					defer wg.Done()
					f, err := os.Open(p)
					if err != nil {
						errs <- err
						return
					}
					defer f.Close()
					r, err := sess.ScanFile(ctx, f)
					if err != nil {
						errs <- err
						return
					}
					if (r.Status == clamd.StatusFound) != (i%3 == 0) || r.Path != p {
						errs <- fmt.Errorf("file %d: got %+v", i, r)
					}
				}()
			}
			if err := sess.Ping(ctx); err != nil {
				t.Error(err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if err := sess.Close(); err != nil {
				t.Fatal(err)
			}
			if err := sess.Ping(ctx); !errors.Is(err, clamd.ErrSessionClosed) {
				t.Fatalf("Ping after Close: %v, want ErrSessionClosed", err)
			}
			reqs := s.Requests()
			if len(reqs) != 31 {
				t.Fatalf("server received %d requests, want 31", len(reqs))
			}
			seen := map[int]bool{}
			for _, r := range reqs {
				if !r.Session || seen[r.ID] || r.ID < 1 || r.ID > 31 {
					t.Fatalf("bad session request %+v", r)
				}
				seen[r.ID] = true
			}
		})
	}
}

func slowClean(r clamdtest.Request, name string) clamdtest.Response {
	if bytes.Contains(r.Data, clamdtest.EICAR) {
		return clamdtest.Response{Replies: []string{name + ": Eicar-Test-Signature FOUND"}}
	}
	return clamdtest.Response{Replies: []string{name + ": OK"}, Delay: 30 * time.Millisecond}
}

func TestSessionCallTimeoutKeepsSession(t *testing.T) {
	s := clamdtest.NewUnix(t)
	slow := true
	var mu sync.Mutex
	s.Handle("PING", func(clamdtest.Request) clamdtest.Response {
		mu.Lock()
		defer mu.Unlock()
		if slow {
			slow = false
			return clamdtest.Response{Replies: []string{"PONG"}, Delay: 500 * time.Millisecond}
		}
		return clamdtest.Response{Replies: []string{"PONG"}}
	})
	sess, err := newClient(t, s).Session(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := sess.Ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow Ping: %v, want DeadlineExceeded", err)
	}
	// The late PONG for id 1 must not be taken as the answer to id 2.
	if err := sess.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Ping after a timed-out call: %v", err)
	}
	time.Sleep(600 * time.Millisecond) // the late reply arrives and is dropped
	if err := sess.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Ping after the late reply: %v", err)
	}
}

func TestSessionEndedByServer(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*clamdtest.Server)
		call  func(context.Context, *clamd.Session) error
	}{
		{"hangup", func(s *clamdtest.Server) {
			s.Handle("PING", func(clamdtest.Request) clamdtest.Response { return clamdtest.Response{Hangup: true} })
		}, func(ctx context.Context, s *clamd.Session) error { return s.Ping(ctx) }},
		{"stream over limit", func(s *clamdtest.Server) { s.SetStreamMaxLength(10) },
			func(ctx context.Context, s *clamd.Session) error {
				_, err := s.ScanStream(ctx, bytes.NewReader(make([]byte, 100)))
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := clamdtest.NewUnix(t)
			tt.setup(s)
			ctx := ctxT(t, 5*time.Second)
			sess, err := newClient(t, s).Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			if err := tt.call(ctx, sess); !errors.Is(err, clamd.ErrSessionClosed) {
				t.Fatalf("error = %v, want ErrSessionClosed", err)
			}
			if err := sess.Ping(ctx); !errors.Is(err, clamd.ErrSessionClosed) {
				t.Fatalf("next call: %v, want ErrSessionClosed", err)
			}
		})
	}
}

func TestSessionStream(t *testing.T) {
	s := clamdtest.NewTCP(t)
	ctx := ctxT(t, 5*time.Second)
	sess, err := newClient(t, s).Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	big := append(bytes.Repeat([]byte{'x'}, 200000), clamdtest.EICAR...)
	r, err := sess.ScanStream(ctx, bytes.NewReader(big))
	if err != nil || r.Status != clamd.StatusFound || r.Path != "stream" {
		t.Fatalf("ScanStream = %+v, %v", r, err)
	}
	r, err = sess.ScanStream(ctx, bytes.NewReader([]byte("clean")))
	if err != nil || r.Status != clamd.StatusOK {
		t.Fatalf("ScanStream clean = %+v, %v", r, err)
	}
	if got := s.Requests(); len(got) != 2 || !bytes.Equal(got[0].Data, big) || got[1].ID != 2 {
		t.Fatalf("server received %d requests", len(got))
	}
	f := openFile(t, writeFile(t, t.TempDir(), "f", []byte("x")))
	if _, err := sess.ScanFD(ctx, f); err == nil {
		t.Fatal("FILDES on a TCP session succeeded")
	}
}
