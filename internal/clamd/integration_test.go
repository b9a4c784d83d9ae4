package clamd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
	"github.com/avfleet/avfleet/internal/testutil"
)

const clamExe = "/usr/share/clamav-testfiles/clam.exe"

// eicarFile writes EICAR at test time (the repository holds no copy).
func eicarFile(t *testing.T, dir string) string {
	return writeFile(t, dir, "eicar.com", []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`))
}

func TestRealClamdCommands(t *testing.T) {
	r := clamdtest.StartReal(t, clamdtest.RealOptions{})
	c, err := clamd.NewClient(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 20*time.Second)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testutil.NeedCommand(t, "clamd"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Only test.cvd is loaded, no daily: clamd answers the engine version alone.
	if v.Raw != strings.TrimSpace(string(out)) || v.Daily != 0 || v.Engine == "" {
		t.Fatalf("VERSION = %+v, clamd --version says %q", v, out)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if live, _, max := st.Threads(); len(st.Pools) != 1 || max != 2 || live < 1 || st.Memory.Pools < 1 || st.Memory.PoolsUsed <= 0 {
		t.Fatalf("STATS = %+v (want 1 pool, MaxThreads 2 as configured)", st)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitLog(t, "Database correctly reloaded (10 signatures)", 10*time.Second)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("PING after RELOAD: %v", err)
	}
}

func TestRealClamdScans(t *testing.T) {
	testutil.NeedFile(t, clamExe)
	r := clamdtest.StartReal(t, clamdtest.RealOptions{TCP: true})
	dir := t.TempDir()
	eicar := eicarFile(t, dir)
	clean := writeFile(t, dir, "clean.txt", []byte("nothing to see here\n"))
	unix, err := clamd.NewClient(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := clamd.NewClient(r.TCP)
	if err != nil {
		t.Fatal(err)
	}
	type scanFn func(context.Context, *clamd.Client, string) (clamd.Result, error)
	fildes := func(ctx context.Context, c *clamd.Client, p string) (clamd.Result, error) {
		f, err := os.Open(p)
		if err != nil {
			return clamd.Result{}, err
		}
		defer f.Close()
		return c.ScanFD(ctx, f)
	}
	instream := func(ctx context.Context, c *clamd.Client, p string) (clamd.Result, error) {
		f, err := os.Open(p)
		if err != nil {
			return clamd.Result{}, err
		}
		defer f.Close()
		return c.ScanStream(ctx, f)
	}
	scanPath := func(ctx context.Context, c *clamd.Client, p string) (clamd.Result, error) {
		rs, err := c.Scan(ctx, p)
		if err != nil {
			return clamd.Result{}, err
		}
		if len(rs) != 1 {
			return clamd.Result{}, errors.New("want one result")
		}
		return rs[0], nil
	}
	tests := []struct {
		name   string
		c      *clamd.Client
		scan   scanFn
		path   string
		status clamd.Status
		sig    string
		resp   string // Result.Path
	}{
		{"FILDES eicar", unix, fildes, eicar, clamd.StatusFound, "Eicar-Test-Signature", eicar},
		{"FILDES clam.exe", unix, fildes, clamExe, clamd.StatusFound, "Clamav.Test.File-6", clamExe},
		{"FILDES clean", unix, fildes, clean, clamd.StatusOK, "", clean},
		{"INSTREAM unix eicar", unix, instream, eicar, clamd.StatusFound, "Eicar-Test-Signature", "stream"},
		{"INSTREAM tcp eicar", tcp, instream, eicar, clamd.StatusFound, "Eicar-Test-Signature", "stream"},
		{"INSTREAM tcp clam.exe", tcp, instream, clamExe, clamd.StatusFound, "Clamav.Test.File-6", "stream"},
		{"INSTREAM tcp clean", tcp, instream, clean, clamd.StatusOK, "", "stream"},
		{"SCAN eicar", unix, scanPath, eicar, clamd.StatusFound, "Eicar-Test-Signature", eicar},
		{"SCAN missing", unix, scanPath, dir + "/missing", clamd.StatusError, "", dir + "/missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.scan(ctxT(t, 10*time.Second), tt.c, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.status || got.Signature != tt.sig || got.Path != tt.resp {
				t.Fatalf("got %+v, want %v %q for %s", got, tt.status, tt.sig, tt.resp)
			}
			if tt.status == clamd.StatusError && got.Err == "" {
				t.Fatalf("ERROR result without a message: %+v", got)
			}
		})
	}
	t.Run("ScanFile over TCP", func(t *testing.T) {
		f := openFile(t, eicar)
		got, err := tcp.ScanFile(ctxT(t, 10*time.Second), f)
		if err != nil || got.Status != clamd.StatusFound || got.Path != eicar {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("CONTSCAN and MULTISCAN", func(t *testing.T) {
		sub := t.TempDir()
		a := eicarFile(t, sub)
		b := writeFile(t, sub, "b: colon.exe", mustRead(t, clamExe))
		writeFile(t, sub, "c.txt", []byte("clean"))
		for _, scan := range []func(context.Context, string) ([]clamd.Result, error){unix.ContScan, unix.MultiScan} {
			rs, err := scan(ctxT(t, 10*time.Second), sub)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, r := range rs {
				got[r.Path] = r.Signature
			}
			if len(rs) != 2 || got[a] != "Eicar-Test-Signature" || got[b] != "Clamav.Test.File-6" {
				t.Fatalf("got %+v", rs)
			}
		}
	})
	t.Run("FILDES over TCP refused", func(t *testing.T) {
		if _, err := fildes(ctxT(t, 5*time.Second), tcp, eicar); err == nil {
			t.Fatal("FILDES over TCP succeeded")
		}
	})
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRealClamdStreamMaxLength(t *testing.T) {
	r := clamdtest.StartReal(t, clamdtest.RealOptions{TCP: true, Conf: []string{"StreamMaxLength 1M"}})
	data := bytes.Repeat([]byte("A"), 3<<20)
	for _, addr := range []string{r.Socket, r.TCP} {
		t.Run(addr[:3], func(t *testing.T) {
			c, err := clamd.NewClient(addr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ScanStream(ctxT(t, 10*time.Second), bytes.NewReader(data))
			if !errors.Is(err, clamd.ErrSizeLimit) {
				t.Fatalf("3 MiB stream with StreamMaxLength 1M: error = %v, want ErrSizeLimit", err)
			}
			// Just under the limit passes.
			res, err := c.ScanStream(ctxT(t, 10*time.Second), bytes.NewReader(data[:1<<20-1]))
			if err != nil || res.Status != clamd.StatusOK {
				t.Fatalf("stream under the limit: %+v, %v", res, err)
			}
		})
	}
}

func TestRealClamdSession(t *testing.T) {
	testutil.NeedFile(t, clamExe)
	r := clamdtest.StartReal(t, clamdtest.RealOptions{TCP: true})
	dir := t.TempDir()
	files := map[string]string{
		eicarFile(t, dir): "Eicar-Test-Signature",
		clamExe:           "Clamav.Test.File-6",
	}
	for i := range 20 {
		files[writeFile(t, dir, "clean"+string(rune('a'+i)), bytes.Repeat([]byte{byte(i)}, 1000*i))] = ""
	}
	for _, addr := range []string{r.Socket, r.TCP} {
		t.Run(addr[:3], func(t *testing.T) {
			c, err := clamd.NewClient(addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t, 20*time.Second)
			sess, err := c.Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := map[string]string{}
			for p := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f, err := os.Open(p)
					if err != nil {
						t.Error(err)
						return
					}
					defer f.Close()
					res, err := sess.ScanFile(ctx, f)
					if err != nil {
						t.Errorf("%s: %v", p, err)
						return
					}
					mu.Lock()
					got[res.Path] = res.Signature
					mu.Unlock()
				}()
			}
			if err := sess.Ping(ctx); err != nil {
				t.Error(err)
			}
			if err := sess.Ping(ctx); err != nil {
				t.Error(err)
			}
			wg.Wait()
			for p, sig := range files {
				if s, ok := got[p]; !ok || s != sig {
					t.Errorf("%s: got %q (reported %v), want %q", filepath.Base(p), s, ok, sig)
				}
			}
			if err := sess.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRealClamdSessionReadTimeout(t *testing.T) {
	r := clamdtest.StartReal(t, clamdtest.RealOptions{Conf: []string{"ReadTimeout 1"}})
	c, err := clamd.NewClient(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	sess, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // idle past ReadTimeout
	err = sess.Ping(ctx)
	if !errors.Is(err, clamd.ErrSessionClosed) || !strings.Contains(err.Error(), "COMMAND READ TIMED OUT") {
		t.Fatalf("Ping on a session idle past ReadTimeout: %v", err)
	}
}
