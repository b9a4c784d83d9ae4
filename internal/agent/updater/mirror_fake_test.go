package updater

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// fakeMirror is a unit-test stand-in for `avfleet mirror serve`: a real TLS
// server requiring a client certificate, serving files from memory and a
// manifest the test publishes. Integration tests use the real mirror.
type fakeMirror struct {
	t      *testing.T
	srv    *httptest.Server
	certs  string
	mu     sync.Mutex
	files  map[string][]byte
	man    Manifest
	gen    uint64
	wake   chan struct{}
	down   bool
	hits   map[string]int
	report []map[string]any
}

func newFakeMirror(t *testing.T) *fakeMirror {
	t.Helper()
	certs := t.TempDir()
	if err := tlsutil.Init(certs, []string{"127.0.0.1", "localhost"}, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	f := &fakeMirror{t: t, certs: certs, files: map[string][]byte{}, wake: make(chan struct{}), hits: map[string]int{}}
	f.man.ETag = "empty"
	conf, _, err := tlsutil.ServerConfig(filepath.Join(certs, "server.crt"), filepath.Join(certs, "server.key"), filepath.Join(certs, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = conf
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMirror) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	f.hits[r.URL.Path]++
	man, wake := f.man, f.wake
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/api/v1/manifest":
		writeManifest(w, man)
	case r.URL.Path == "/api/v1/watch":
		if v := strings.Trim(r.URL.Query().Get("version"), `"`); v == man.ETag {
			select {
			case <-wake:
				f.mu.Lock()
				man = f.man
				f.mu.Unlock()
			case <-time.After(2 * time.Second): // the real mirror waits 60 s
				w.WriteHeader(http.StatusNotModified)
				return
			case <-r.Context().Done():
				return
			}
		}
		writeManifest(w, man)
	case strings.HasPrefix(r.URL.Path, "/api/v1/nodes/"):
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.mu.Lock()
		f.report = append(f.report, body)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		f.mu.Lock()
		b, ok := f.files[r.URL.Path]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}
}

func writeManifest(w http.ResponseWriter, m Manifest) {
	w.Header().Set("ETag", strconv.Quote(m.ETag))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(m)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// dbSpec describes one served database: the file at path holds version;
// full (optional) is the newest full file; cdiffs maps version -> content.
type dbSpec struct {
	name        string
	version     uint
	kind        string
	file        []byte
	signedBy    string
	fullVersion uint
	full        []byte
	cdiffs      map[uint][]byte
	rolledBack  bool
	signs       map[string][]byte // served path -> its .sign
}

// publish replaces the served set and wakes watchers.
func (f *fakeMirror) publish(specs ...dbSpec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	m := Manifest{Generation: f.gen, PublishedAt: time.Now().UTC(), ETag: fmt.Sprintf("gen%d", f.gen)}
	f.files = map[string][]byte{}
	for _, s := range specs {
		path := fmt.Sprintf("/%s.%s", s.name, s.kind)
		f.files[path] = s.file
		d := ManifestDB{Name: s.name, Version: s.version, Kind: s.kind, Path: path, Size: int64(len(s.file)),
			SHA256: sum(s.file), SignedBy: s.signedBy, FullVersion: s.version, FullPath: path,
			FullSize: int64(len(s.file)), FullSHA256: sum(s.file), RolledBack: s.rolledBack}
		if sg, ok := s.signs[path]; ok {
			d.SignPath = fmt.Sprintf("/%s-%d.cvd.sign", s.name, s.version)
			d.FullSignPath = d.SignPath
			f.files[d.SignPath] = sg
		}
		if d.SignedBy == "" {
			d.SignedBy = "clamav"
		}
		if s.full != nil {
			fp := fmt.Sprintf("/%s.cvd", s.name)
			f.files[fp] = s.full
			d.FullVersion, d.FullPath, d.FullSize, d.FullSHA256 = s.fullVersion, fp, int64(len(s.full)), sum(s.full)
		}
		if len(s.cdiffs) > 0 {
			lo, hi := ^uint(0), uint(0)
			for v := range s.cdiffs {
				lo, hi = min(lo, v), max(hi, v)
			}
			d.CDiffs = &CDiffRange{From: lo, To: hi}
			for v := lo; v <= hi; v++ {
				p := fmt.Sprintf("/%s-%d.cdiff", s.name, v)
				f.files[p] = s.cdiffs[v]
				cf := CDiffFile{Version: v, Path: p, Size: int64(len(s.cdiffs[v])), SHA256: sum(s.cdiffs[v])}
				if sg, ok := s.signs[p]; ok {
					cf.SignPath = p + ".sign"
					f.files[cf.SignPath] = sg
				}
				d.CDiffFiles = append(d.CDiffFiles, cf)
			}
		}
		m.Databases = append(m.Databases, d)
	}
	f.man = m
	close(f.wake)
	f.wake = make(chan struct{})
}

// replace swaps one served file's bytes without touching the manifest (a
// compromised or broken mirror).
func (f *fakeMirror) replace(path string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = b
}

func (f *fakeMirror) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeMirror) hitCount(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

func (f *fakeMirror) client(t *testing.T) *Client {
	t.Helper()
	conf, err := tlsutil.ClientConfig(filepath.Join(f.certs, "ca.crt"), filepath.Join(f.certs, "node1.crt"), filepath.Join(f.certs, "node1.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(f.srv.URL, conf, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testdata reads one of ClamAV's real test databases.
func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.ClamAVTestdata(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cvdSpec serves test-N.cvd as database "test".
func cvdSpec(t *testing.T, n uint) dbSpec {
	return dbSpec{name: "test", version: n, kind: "cvd", file: testdata(t, fmt.Sprintf("test-%d.cvd", n))}
}

// chainSpec serves test-N.cvd as the file and cdiffs from..N.
func chainSpec(t *testing.T, n, from uint) dbSpec {
	s := cvdSpec(t, n)
	s.cdiffs = map[uint][]byte{}
	for v := from; v <= n; v++ {
		s.cdiffs[v] = testdata(t, fmt.Sprintf("test-%d.cdiff", v))
	}
	return s
}
