package updater

import (
	"strings"
	"testing"
)

const goodManifest = `{"etag":"5c1f0e9a3b7d2c41","generation":12,"published_at":"2026-11-26T05:41:29Z","databases":[
 {"name":"test","version":6,"build_time":"2021-06-23T01:34:05Z","sigs":14,"flevel":81,"kind":"cld","path":"/test.cld",
  "size":40960,"sha256":"` + hex64 + `","sign_path":"","signed_by":"clamav","full_version":3,"full_path":"/test.cvd",
  "full_size":8394,"full_sha256":"` + hex64 + `","full_sign_path":"/test-3.cvd.sign","cdiffs":{"from":2,"to":6},
  "cdiff_files":[{"version":2,"path":"/test-2.cdiff","size":765,"sha256":"` + hex64 + `","sign_path":""},
   {"version":3,"path":"/test-3.cdiff","size":765,"sha256":"` + hex64 + `","sign_path":""},
   {"version":4,"path":"/test-4.cdiff","size":765,"sha256":"` + hex64 + `","sign_path":""},
   {"version":5,"path":"/test-5.cdiff","size":765,"sha256":"` + hex64 + `","sign_path":""},
   {"version":6,"path":"/test-6.cdiff","size":765,"sha256":"` + hex64 + `","sign_path":"/test-6.cdiff.sign"}],
  "held":false,"rolled_back":false,"future_field":1}]}`

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestDecodeManifest(t *testing.T) {
	m, err := DecodeManifest(strings.NewReader(goodManifest))
	if err != nil {
		t.Fatal(err)
	}
	d := findDB(m, "test")
	if d == nil || d.Version != 6 || d.CDiffs.To != 6 || len(d.CDiffFiles) != 5 {
		t.Fatalf("%+v", d)
	}
	for _, tc := range []struct {
		from uint
		want int // chain length, 0 = none
	}{{1, 5}, {2, 4}, {5, 1}, {6, 0}, {7, 0}, {0, 0}} {
		if got := len(cdiffChain(d, tc.from)); got != tc.want {
			t.Errorf("chain from %d: %d files, want %d", tc.from, got, tc.want)
		}
	}

	bad := []struct{ name, from, to, want string }{
		{"path traversal", `"/test.cld"`, `"/../etc/passwd"`, "not a plain /name"},
		{"absolute url", `"/test.cld"`, `"https://evil/test.cld"`, "not a plain /name"},
		{"bad name", `"name":"test"`, `"name":"../x"`, "not a database name"},
		{"bad kind", `"kind":"cld"`, `"kind":"exe"`, "kind"},
		{"bad hash", `"size":40960,"sha256":"` + hex64, `"size":40960,"sha256":"xyz`, "sha256"},
		{"zero size", `"size":40960`, `"size":0`, "size 0"},
		{"no etag", `"etag":"5c1f0e9a3b7d2c41"`, `"etag":""`, "etag"},
		{"quote in etag", `"etag":"5c1f0e9a3b7d2c41"`, `"etag":"a\"b"`, "etag"},
		{"bad sign path", `"/test-6.cdiff.sign"`, `"/x/../../y"`, "sign_path"},
		{"empty cdiff range", `{"from":2,"to":6}`, `{"from":7,"to":6}`, "cdiffs"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(goodManifest, tc.from, tc.to, 1)
			if in == goodManifest {
				t.Fatal("test did not change the manifest")
			}
			_, err := DecodeManifest(strings.NewReader(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := DecodeManifest(strings.NewReader("<html>502 Bad Gateway</html>")); err == nil || !strings.Contains(err.Error(), "not the JSON") {
		t.Errorf("HTML body: %v", err)
	}
	if _, err := DecodeManifest(strings.NewReader(`{"etag":"a","databases":[` + strings.Repeat(" ", maxManifestBytes) + `]}`)); err == nil {
		t.Error("oversized manifest accepted")
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(goodManifest))
	f.Add([]byte(`{"etag":"x","databases":[]}`))
	f.Add([]byte(`{"etag":"x","databases":[{"name":"a","version":1,"kind":"cvd","path":"/a.cvd","size":1,"sha256":"` + hex64 + `","cdiffs":{"from":1,"to":4294967295}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for i := range m.Databases {
			d := &m.Databases[i]
			if !dbNameRe.MatchString(d.Name) || !filePathRe.MatchString(d.Path) {
				t.Fatalf("accepted unsafe name or path: %q %q", d.Name, d.Path)
			}
			for from := uint(0); from < 4; from++ {
				for _, c := range cdiffChain(d, from) {
					if !filePathRe.MatchString(c.Path) {
						t.Fatalf("unsafe cdiff path %q", c.Path)
					}
				}
			}
		}
	})
}
