package mirror

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseReport: node reports are bytes from the network.
func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`{"node":"web-1","agent_version":"0.1","databases":{"daily":27480},"last_update":"2026-11-26T05:40:00Z","last_scan":{"files":1},"detections":[{"path":"/x","signature":"Eicar"}]}`), "web-1")
	f.Add([]byte(`{"node":"web-1","databases":{"../x":1}}`), "web-1")
	f.Add([]byte(`{"node":"a","databases":{"daily":-1}}`), "a")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, body []byte, node string) {
		rep, err := parseReport(body, node)
		if err != nil {
			return
		}
		if rep.Node != node || node == "" {
			t.Fatalf("accepted a report for %q from URL node %q", rep.Node, node)
		}
		for name := range rep.Databases {
			if !validDBName(name) {
				t.Fatalf("accepted database name %q", name)
			}
		}
	})
}

// FuzzPeekHeader: incoming/ files are bytes from anyone; ordering them must
// never fail or misread a version.
func FuzzPeekHeader(f *testing.F) {
	f.Add([]byte("ClamAV-VDB:22 Jun 2021 21-34 -0400:6:14:81:X:X:micasnyd:1624412045"))
	f.Add([]byte("ClamAV-Diff:2:479:"))
	f.Add([]byte("ClamAV-VDB::99999999999999999999:"))
	f.Add([]byte("<html>"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		kind, v, ok := peekHeader(p)
		if ok && kind != "vdb" && kind != "diff" {
			t.Fatalf("kind %q", kind)
		}
		if !ok && v != 0 {
			t.Fatalf("version %d without a header", v)
		}
		names := []string{"f"}
		sortForIngest(dir, names)
	})
}
