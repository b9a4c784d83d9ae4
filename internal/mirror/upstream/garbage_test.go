package upstream_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/upstream"
	"github.com/avfleet/avfleet/internal/testutil"
)

const htmlPage = `<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>` +
	`<p>The CDN could not reach the origin.</p></body></html>`

// An upstream that serves garbage or an older version changes nothing the
// mirror serves: the served set hashes the same before and after, and what
// was downloaded is in rejected/ with a reason, not left in incoming/.
func TestSyncGarbageChangesNothing(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(td, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	noCDiffs := func(f *fakeUpstream) {
		for v := 2; v <= 6; v++ {
			f.setFile(fmt.Sprintf("test-%d.cdiff", v), nil)
		}
	}
	flip := func(b []byte, at int) []byte {
		c := append([]byte(nil), b...)
		c[at] ^= 0x20
		return c
	}
	cases := []struct {
		name      string
		dns       uint // version the DNS record advertises; 0: no DNS
		edit      func(f *fakeUpstream)
		result    string
		rejected  int    // files the verifier must have rejected
		errSubstr string // in the sync result's error
	}{
		{name: "html page instead of the header", result: upstream.ResultFailed, errSubstr: "not a CVD header",
			edit: func(f *fakeUpstream) {
				f.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Content-Type", "text/html")
					w.Write([]byte(strings.Repeat(htmlPage, 8)))
					return true
				})
			}},
		{name: "html page instead of the whole cvd", result: upstream.ResultFailed, rejected: 1, errSubstr: "rejected",
			edit: func(f *fakeUpstream) {
				noCDiffs(f)
				f.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/test.cvd" || r.Header.Get("Range") != "" {
						return false
					}
					w.Header().Set("Content-Type", "text/html")
					w.Write([]byte(htmlPage))
					return true
				})
			}},
		{name: "truncated cvd", result: upstream.ResultFailed, rejected: 1, errSubstr: "rejected",
			edit: func(f *fakeUpstream) {
				noCDiffs(f)
				b := read("test-6.cvd")
				f.setFile("test.cvd", b[:len(b)-2000])
			}},
		{name: "connection cut during the cvd", result: upstream.ResultFailed, errSubstr: "unexpected EOF",
			edit: func(f *fakeUpstream) {
				noCDiffs(f)
				b := read("test-6.cvd")
				f.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/test.cvd" || r.Header.Get("Range") != "" {
						return false
					}
					conn, buf, err := w.(http.Hijacker).Hijack()
					if err != nil {
						return false
					}
					defer conn.Close()
					fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n", len(b))
					buf.Write(b[:len(b)/2])
					buf.Flush()
					return true
				})
			}},
		{name: "bit-flipped cdiff and bit-flipped cvd", result: upstream.ResultFailed, rejected: 2, errSubstr: "rejected",
			edit: func(f *fakeUpstream) {
				b := read("test-4.cdiff")
				f.setFile("test-4.cdiff", flip(b, len(b)-40))
				c := read("test-6.cvd")
				f.setFile("test.cvd", flip(c, len(c)/2))
			}},
		{name: "older version upstream", result: upstream.ResultCurrent,
			edit: func(f *fakeUpstream) {
				noCDiffs(f)
				f.setFile("test.cvd", read("test-2.cvd"))
			}},
		{name: "older version upstream, newer Last-Modified", result: upstream.ResultCurrent,
			edit: func(f *fakeUpstream) {
				old := read("test-2.cvd")
				f.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/test.cvd" {
						return false
					}
					// A CDN node that re-uploaded an old file: If-Modified-Since
					// does not catch it, the header's version must.
					http.ServeContent(w, r, "", time.Now(), bytes.NewReader(old))
					return true
				})
			}},
		{name: "older cvd than DNS advertises", dns: 7, result: upstream.ResultFailed, errSubstr: "not in sync",
			edit: func(f *fakeUpstream) {
				noCDiffs(f)
				f.setFile("test.cvd", read("test-3.cvd"))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st := newStore(t, dir, "test-3.cvd")
			before := servedHash(t, dir)
			up := newFakeUpstream(t, false, stdFiles(t))
			tc.edit(up)
			o := syncerOpts{}
			if tc.dns > 0 {
				res := &fakeResolver{}
				now := time.Now().Unix()
				res.set("current.cvd.clamav.net", "1.4.3:62:27480:"+strconv.FormatInt(now, 10)+":0:90:0:339")
				res.set("test.cvd.clamav.net", fmt.Sprintf("%d:%d", tc.dns, now))
				o = syncerOpts{dnsTXT: "current.cvd.clamav.net", resolver: res}
			}
			r := syncOnce(t, newSyncer(t, st, up, o))
			if r.Result != tc.result || !strings.Contains(r.Error, tc.errSubstr) {
				t.Errorf("result %+v, want %s with error containing %q", r, tc.result, tc.errSubstr)
			}
			if got := servedHash(t, dir); got != before {
				t.Errorf("the served set changed")
			}
			if v, _ := served(t, st); v != 3 {
				t.Errorf("served version %d, want 3", v)
			}
			rej, err := st.State().Rejections("", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(rej) != tc.rejected {
				t.Errorf("%d rejections %+v, want %d", len(rej), rej, tc.rejected)
			}
			for _, x := range rej {
				if x.Source != "sync" {
					t.Errorf("rejection %+v: source %q, want sync", x, x.Source)
				}
			}
			left, err := os.ReadDir(st.IncomingDir())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range left {
				t.Errorf("left in incoming/: %s", e.Name())
			}
		})
	}
}

// A server that ignores Range and If-Modified-Since (200 with the whole
// file) still answers the header check: the version comes from its first
// 512 bytes and nothing is downloaded into incoming/.
func TestSyncHeaderCheckIgnoredRange(t *testing.T) {
	dir := t.TempDir()
	st := newStore(t, dir, "test-6.cvd")
	up := newFakeUpstream(t, false, stdFiles(t))
	up.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
		// A server that ignores Range and If-Modified-Since and sends all.
		b := up.files["test.cvd"]
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		bw := bufio.NewWriter(w)
		bw.Write(b)
		bw.Flush()
		return true
	})
	r := syncOnce(t, newSyncer(t, st, up, syncerOpts{}))
	if r.Result != upstream.ResultCurrent || r.UpstreamVersion != 6 {
		t.Fatalf("result %+v, want current at 6", r)
	}
}
