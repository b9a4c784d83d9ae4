package clamd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
)

func newClient(t *testing.T, s *clamdtest.Server) *clamd.Client {
	t.Helper()
	c, err := clamd.NewClient(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func openFile(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSimpleCommands covers the single-reply commands and clamd's error
// replies, over both transports.
func TestSimpleCommands(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*clamdtest.Server)
		call    func(context.Context, *clamd.Client) (any, error)
		want    any
		wantErr error
		sent    string
	}{
		{"ping", nil, func(ctx context.Context, c *clamd.Client) (any, error) { return nil, c.Ping(ctx) }, nil, nil, "PING"},
		{"ping wrong reply", func(s *clamdtest.Server) {
			s.Handle("PING", func(clamdtest.Request) clamdtest.Response { return clamdtest.Response{Replies: []string{"PANG"}} })
		}, func(ctx context.Context, c *clamd.Client) (any, error) { return nil, c.Ping(ctx) }, nil, clamd.ErrProtocol, "PING"},
		{"ping hangup", func(s *clamdtest.Server) {
			s.Handle("PING", func(clamdtest.Request) clamdtest.Response { return clamdtest.Response{Hangup: true} })
		}, func(ctx context.Context, c *clamd.Client) (any, error) { return nil, c.Ping(ctx) }, nil, clamd.ErrNoReply, "PING"},
		{"version", nil, func(ctx context.Context, c *clamd.Client) (any, error) {
			v, err := c.Version(ctx)
			return v.Daily, err
		}, 27500, nil, "VERSION"},
		{"version plain", func(s *clamdtest.Server) { s.SetVersion("ClamAV 1.4.6") }, func(ctx context.Context, c *clamd.Client) (any, error) {
			v, err := c.Version(ctx)
			return v.Engine + "/" + string(rune('0'+v.Daily)), err
		}, "1.4.6/0", nil, "VERSION"},
		{"stats", nil, func(ctx context.Context, c *clamd.Client) (any, error) {
			st, err := c.Stats(ctx)
			_, _, max := st.Threads()
			return max, err
		}, 2, nil, "STATS"},
		{"reload", nil, func(ctx context.Context, c *clamd.Client) (any, error) { return nil, c.Reload(ctx) }, nil, nil, "RELOAD"},
		{"reload unavailable", func(s *clamdtest.Server) { s.Disable("RELOAD") },
			func(ctx context.Context, c *clamd.Client) (any, error) { return nil, c.Reload(ctx) }, nil, clamd.ErrCommandUnavailable, "RELOAD"},
		{"unknown command", func(s *clamdtest.Server) {
			s.Handle("STATS", func(clamdtest.Request) clamdtest.Response {
				return clamdtest.Response{Replies: []string{"UNKNOWN COMMAND"}}
			})
		}, func(ctx context.Context, c *clamd.Client) (any, error) { _, err := c.Stats(ctx); return nil, err }, nil, clamd.ErrUnknownCommand, "STATS"},
		{"slow reply hits deadline", func(s *clamdtest.Server) {
			s.Handle("PING", func(clamdtest.Request) clamdtest.Response {
				return clamdtest.Response{Replies: []string{"PONG"}, Delay: 2 * time.Second}
			})
		}, func(ctx context.Context, c *clamd.Client) (any, error) {
			ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			return nil, c.Ping(ctx)
		}, nil, context.DeadlineExceeded, "PING"},
	}
	for _, network := range []string{"unix", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				s := newServer(t, network)
				if tt.setup != nil {
					tt.setup(s)
				}
				got, err := tt.call(ctxT(t, 5*time.Second), newClient(t, s))
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("error = %v, want %v", err, tt.wantErr)
					}
				} else if err != nil {
					t.Fatal(err)
				} else if got != tt.want {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				if cmds := s.Commands(); len(cmds) != 1 || cmds[0] != tt.sent {
					t.Fatalf("server received %v, want [%s]", cmds, tt.sent)
				}
			})
		}
	}
}

func newServer(t *testing.T, network string) *clamdtest.Server {
	if network == "tcp" {
		return clamdtest.NewTCP(t)
	}
	return clamdtest.NewUnix(t)
}

func TestCancelClosesConnection(t *testing.T) {
	s := clamdtest.NewUnix(t)
	s.Handle("PING", func(clamdtest.Request) clamdtest.Response {
		return clamdtest.Response{Replies: []string{"PONG"}, Delay: 3 * time.Second}
	})
	ctx, cancel := context.WithCancel(context.Background()) // no deadline: only cancel can stop it
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err := newClient(t, s).Ping(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel took %v to interrupt the call", d)
	}
}

func TestPathScans(t *testing.T) {
	dir := t.TempDir()
	eicar := writeFile(t, dir, "eicar.com", clamdtest.EICAR)
	colon := writeFile(t, dir, "a: b.txt", append([]byte("x"), clamdtest.EICAR...))
	clean := writeFile(t, dir, "clean.txt", []byte("hello"))
	cleanDir := t.TempDir()
	writeFile(t, cleanDir, "x", []byte("x"))

	s := clamdtest.NewUnix(t)
	c := newClient(t, s)
	tests := []struct {
		name string
		scan func(context.Context, string) ([]clamd.Result, error)
		path string
		want []clamd.Result
	}{
		{"scan found", c.Scan, eicar, []clamd.Result{{Path: eicar, Signature: "Eicar-Test-Signature", Status: clamd.StatusFound}}},
		{"scan clean", c.Scan, clean, []clamd.Result{{Path: clean, Status: clamd.StatusOK}}},
		{"scan missing", c.Scan, dir + "/nope", []clamd.Result{{Path: dir + "/nope", Status: clamd.StatusError,
			Err: "File path check failure: No such file or directory."}}},
		{"contscan reports every match", c.ContScan, dir, []clamd.Result{
			{Path: colon, Signature: "Eicar-Test-Signature", Status: clamd.StatusFound},
			{Path: eicar, Signature: "Eicar-Test-Signature", Status: clamd.StatusFound}}},
		{"multiscan clean dir", c.MultiScan, cleanDir, []clamd.Result{{Path: cleanDir, Status: clamd.StatusOK}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.scan(ctxT(t, 5*time.Second), tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i].Path != tt.want[i].Path || got[i].Status != tt.want[i].Status ||
					got[i].Signature != tt.want[i].Signature || got[i].Err != tt.want[i].Err {
					t.Fatalf("result %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
	reqs := s.Requests()
	if reqs[0].Command != "SCAN" || reqs[0].Arg != eicar || reqs[3].Command != "CONTSCAN" || reqs[4].Command != "MULTISCAN" {
		t.Fatalf("server received %+v", reqs)
	}
}

func TestScanFD(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		data    []byte
		handler clamdtest.Handler
		want    clamd.Result
		wantErr error
	}{
		{"eicar", clamdtest.EICAR, nil, clamd.Result{Signature: "Eicar-Test-Signature", Status: clamd.StatusFound}, nil},
		{"clean", []byte("hello world"), nil, clamd.Result{Status: clamd.StatusOK}, nil},
		{"empty", nil, nil, clamd.Result{Status: clamd.StatusOK}, nil},
		{"clamd error", []byte("x"), func(r clamdtest.Request) clamdtest.Response {
			return clamdtest.Response{Replies: []string{"fd[7]: Can't read: Permission denied. ERROR"}}
		}, clamd.Result{Status: clamd.StatusError, Err: "Can't read: Permission denied."}, nil},
		{"all match", clamdtest.EICAR, func(r clamdtest.Request) clamdtest.Response {
			return clamdtest.Response{Replies: []string{"fd[7]: A FOUND", "fd[7]: B FOUND"}}
		}, clamd.Result{Status: clamd.StatusFound, Signature: "A", Others: []string{"B"}}, nil},
		{"unavailable", []byte("x"), func(r clamdtest.Request) clamdtest.Response {
			return clamdtest.Response{Replies: []string{"COMMAND UNAVAILABLE"}}
		}, clamd.Result{}, clamd.ErrCommandUnavailable},
		{"no engine", []byte("x"), func(r clamdtest.Request) clamdtest.Response {
			return clamdtest.Response{Hangup: true}
		}, clamd.Result{}, clamd.ErrNoReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := clamdtest.NewUnix(t)
			if tt.handler != nil {
				s.Handle("FILDES", tt.handler)
			}
			p := writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "_"), tt.data)
			f := openFile(t, p)
			f.Seek(3, 0) // FILDES must not depend on the caller's offset
			got, err := newClient(t, s).ScanFD(ctxT(t, 5*time.Second), f)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Path = p
			if got.Path != tt.want.Path || got.Status != tt.want.Status || got.Signature != tt.want.Signature ||
				got.Err != tt.want.Err || strings.Join(got.Others, ",") != strings.Join(tt.want.Others, ",") {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			r := s.Requests()[0]
			if r.Command != "FILDES" || r.FDPath != p || !bytes.Equal(r.Data, tt.data) {
				t.Fatalf("server got %s for %q with %d bytes, want FILDES for %q with %d", r.Command, r.FDPath, len(r.Data), p, len(tt.data))
			}
		})
	}
}

func TestScanFDNeedsUnix(t *testing.T) {
	s := clamdtest.NewTCP(t)
	f := openFile(t, writeFile(t, t.TempDir(), "f", []byte("x")))
	if _, err := newClient(t, s).ScanFD(ctxT(t, 5*time.Second), f); err == nil || !strings.Contains(err.Error(), "unix socket") {
		t.Fatalf("FILDES over TCP: error = %v", err)
	}
	if n := len(s.Requests()); n != 0 {
		t.Fatalf("server received %d requests", n)
	}
}

func TestScanStream(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640000 bytes: several chunks
	tests := []struct {
		name    string
		network string
		data    []byte
		limit   int64
		want    clamd.Result
		wantErr error
	}{
		{"eicar unix", "unix", clamdtest.EICAR, 0, clamd.Result{Path: "stream", Signature: "Eicar-Test-Signature", Status: clamd.StatusFound}, nil},
		{"eicar tcp", "tcp", clamdtest.EICAR, 0, clamd.Result{Path: "stream", Signature: "Eicar-Test-Signature", Status: clamd.StatusFound}, nil},
		{"big clean tcp", "tcp", big, 0, clamd.Result{Path: "stream", Status: clamd.StatusOK}, nil},
		{"eicar at chunk end", "tcp", append(bytes.Repeat([]byte{'a'}, 65536-10), clamdtest.EICAR...), 0,
			clamd.Result{Path: "stream", Signature: "Eicar-Test-Signature", Status: clamd.StatusFound}, nil},
		{"empty", "unix", nil, 0, clamd.Result{Path: "stream", Status: clamd.StatusOK}, nil},
		{"over limit tcp", "tcp", big, 100000, clamd.Result{}, clamd.ErrSizeLimit},
		{"over limit unix", "unix", big, 100000, clamd.Result{}, clamd.ErrSizeLimit},
		{"at limit", "unix", big[:100000], 100000, clamd.Result{Path: "stream", Status: clamd.StatusOK}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.network)
			s.SetStreamMaxLength(tt.limit)
			got, err := newClient(t, s).ScanStream(ctxT(t, 10*time.Second), bytes.NewReader(tt.data))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tt.want.Path || got.Status != tt.want.Status || got.Signature != tt.want.Signature {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if r := s.Requests()[0]; r.Command != "INSTREAM" || !bytes.Equal(r.Data, tt.data) {
				t.Fatalf("server got %s with %d bytes, want INSTREAM with %d", r.Command, len(r.Data), len(tt.data))
			}
		})
	}
}

func TestScanFilePicksTransport(t *testing.T) {
	p := writeFile(t, t.TempDir(), "eicar", clamdtest.EICAR)
	for _, tt := range []struct{ network, cmd string }{{"unix", "FILDES"}, {"tcp", "INSTREAM"}} {
		t.Run(tt.network, func(t *testing.T) {
			s := newServer(t, tt.network)
			f := openFile(t, p)
			f.Seek(10, 0) // INSTREAM must send the whole file, not from the offset
			r, err := newClient(t, s).ScanFile(ctxT(t, 5*time.Second), f)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != clamd.StatusFound || r.Path != p {
				t.Fatalf("got %+v", r)
			}
			if cmds := s.Commands(); len(cmds) != 1 || cmds[0] != tt.cmd {
				t.Fatalf("server received %v, want [%s]", cmds, tt.cmd)
			}
		})
	}
}

func TestConcurrentScans(t *testing.T) {
	s := clamdtest.NewUnix(t)
	c := newClient(t, s)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		data := []byte("clean")
		if i%4 == 0 {
			data = clamdtest.EICAR
		}
		p := writeFile(t, dir, string(rune('a'+i%26))+string(rune('a'+i/26)), data)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(p)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			r, err := c.ScanFile(context.Background(), f)
			if err != nil {
				errs <- err
				return
			}
			if (r.Status == clamd.StatusFound) != (i%4 == 0) || r.Path != p {
				errs <- errors.New("wrong result " + r.Path + " " + r.Status.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(s.Requests()); n != 40 {
		t.Fatalf("server received %d requests, want 40", n)
	}
}
