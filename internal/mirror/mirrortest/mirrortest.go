// Package mirrortest checks what a running mirror serves, for the tests that
// kill and restart it (internal/mirror, internal/mirror/upstream/mirrorsink):
// every file the manifest names is fetched over HTTP, compared with the
// manifest and verified with the real verifier. It imports nothing of the
// mirror but its API types, so tests on either side of the mirror can use it.
package mirrortest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror/api"
)

// Manifest fetches base + /api/v1/manifest.
func Manifest(c *http.Client, base string) (api.Manifest, error) {
	var m api.Manifest
	b, code, err := get(c, base+api.ManifestPath)
	if err != nil {
		return m, err
	}
	if code != http.StatusOK {
		return m, fmt.Errorf("GET %s: status %d", api.ManifestPath, code)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("GET %s: %w", api.ManifestPath, err)
	}
	return m, nil
}

func get(c *http.Client, url string) ([]byte, int, error) {
	r, err := c.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	return b, r.StatusCode, err
}

// CheckServedSet fetches the manifest and every file it names (again when a
// publish happened in between), checks each file's size and SHA-256 against
// the manifest, verifies every database and cdiff with cvd.Verify (trust nil:
// the built-in keys), and checks that the entries agree with each other: the
// kind and version of each file, the cdiff chain ending at the served
// version, /{db}.cld only above the full CVD. It returns the manifest checked.
func CheckServedSet(t testing.TB, c *http.Client, base string, trust *cvd.Trust) api.Manifest {
	t.Helper()
	var man api.Manifest
	var files map[string][]byte
	for try := 0; ; try++ {
		var err error
		if man, err = Manifest(c, base); err != nil {
			t.Fatal(err)
		}
		files, err = fetchAll(c, base, man)
		again, aerr := Manifest(c, base)
		if aerr != nil {
			t.Fatal(aerr)
		}
		if again.ETag == man.ETag {
			if err != nil {
				t.Fatalf("served set (etag %s): %v", man.ETag, err)
			}
			break
		}
		if try == 20 {
			t.Fatalf("the manifest kept changing while its files were fetched (last error: %v)", err)
		}
	}
	dir := t.TempDir()
	for _, d := range man.Databases {
		verify := func(path, signPath string, want uint, kind string) {
			p := filepath.Join(dir, strings.TrimPrefix(path, "/"))
			if err := os.WriteFile(p, files[path], 0o644); err != nil {
				t.Fatal(err)
			}
			os.Remove(p + ".sign")
			if signPath != "" {
				if err := os.WriteFile(p+".sign", files[signPath], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			info, err := cvd.Verify(p, trust)
			if err != nil {
				t.Errorf("served %s does not verify: %v", path, err)
				return
			}
			v := info.Header.Version
			if info.Kind == cvd.KindCDiff {
				v = info.CDiffVersion
			}
			if v != want || string(info.Kind) != kind {
				t.Errorf("%s is %s version %d, the manifest says %s %d", path, info.Kind, v, kind, want)
			}
		}
		verify(d.Path, d.SignPath, d.Version, d.Kind)
		if d.FullPath != d.Path && d.FullPath != "" {
			verify(d.FullPath, d.FullSignPath, d.FullVersion, "cvd")
		}
		for i, f := range d.CDiffFiles {
			verify(f.Path, f.SignPath, f.Version, "cdiff")
			if d.CDiffs == nil || f.Version != d.CDiffs.From+uint(i) {
				t.Errorf("cdiff list %+v does not match the range %+v", d.CDiffFiles, d.CDiffs)
			}
		}
		if d.CDiffs != nil && d.CDiffs.To != d.Version {
			t.Errorf("%s: cdiffs end at %d, the served version is %d", d.Name, d.CDiffs.To, d.Version)
		}
		if d.FullVersion > d.Version || (d.Kind == "cld") != (d.FullVersion < d.Version) {
			t.Errorf("%s: inconsistent entry %+v", d.Name, d)
		}
	}
	return man
}

// fetchAll downloads every file m names and checks size and SHA-256 where
// the manifest gives them. It returns path -> content.
func fetchAll(c *http.Client, base string, m api.Manifest) (map[string][]byte, error) {
	out := map[string][]byte{}
	fetch := func(path string, size int64, sum string) error {
		if path == "" {
			return nil
		}
		b, code, err := get(c, base+path)
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", path, code)
		}
		if h := sha256.Sum256(b); sum != "" && (int64(len(b)) != size || hex.EncodeToString(h[:]) != sum) {
			return fmt.Errorf("%s: served %d bytes sha256 %x, the manifest says %d bytes %s", path, len(b), h, size, sum)
		}
		out[path] = b
		return nil
	}
	for _, d := range m.Databases {
		for _, f := range []struct {
			path string
			size int64
			sum  string
		}{{d.Path, d.Size, d.SHA256}, {d.FullPath, d.FullSize, d.FullSHA256}, {d.SignPath, 0, ""}, {d.FullSignPath, 0, ""}} {
			if err := fetch(f.path, f.size, f.sum); err != nil {
				return nil, err
			}
		}
		for _, f := range d.CDiffFiles {
			if err := fetch(f.Path, f.Size, f.SHA256); err != nil {
				return nil, err
			}
			if err := fetch(f.SignPath, 0, ""); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
