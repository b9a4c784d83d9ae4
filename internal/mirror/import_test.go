package mirror

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/testutil"
)

// TestImportRejectsTamperedFiles imports real test databases with the real
// binary, then files made bad in the test. Each is rejected with the check
// that caught it, status names that check, and not one byte served changes.
func TestImportRejectsTamperedFiles(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	certs := t.TempDir()
	copyFile(t, filepath.Join(certs, "clamav-test-ca.crt"), filepath.Join(td, "clamav-test-ca.crt"))
	e := newMirrorEnv(t, fmt.Sprintf("trust: {sign_certs_dir: %s}\n", certs))
	importTestChain(t, e, td, true)
	m := e.startMirror(t)
	c := e.client(t, "node1")
	man := e.manifest(t, c)
	before := e.servedFiles(t, c, man)
	if len(before) != 12 { // test.cvd, its .sign, 5 cdiffs and their .sign files
		t.Fatalf("served before: %d files, want 12", len(before))
	}

	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(td, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flip := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		if at < 0 {
			at += len(b)
		}
		b[at] ^= 0x01
		return b
	}
	hdr6 := read("test-6.cvd")
	sigAt := bytes.Index(hdr6[:512], []byte(":Dou6")) + 10 // inside the header's RSA signature
	rng := rand.New(rand.NewSource(1))
	cases := []struct {
		name    string
		content []byte
		sign    []byte // a .sign travelling with it
		check   cvd.Check
	}{
		{"daily.cvd", []byte("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>\n"), nil, cvd.CheckFormat},
		{"main.cvd", nil, nil, cvd.CheckFormat},
		{"test-7.cvd", flip(read("test-6.cvd"), -200), nil, cvd.CheckMD5},                              // a bit in the body
		{"test-8.cvd", flip(read("test-6.cvd"), 512+rng.Intn(len(hdr6)-600)), nil, cvd.CheckMD5},       // another one
		{"test-9.cvd", flip(hdr6, sigAt), nil, cvd.CheckSignature},                                     // a bit of the header signature
		{"test-10.cvd", read("test-6.cvd")[:len(hdr6)*2/3], nil, cvd.CheckMD5},                         // truncated
		{"test-5.cvd", read("test-5.cvd"), read("test-5.cvd.sign"), cvd.CheckVersion},                  // older than 6
		{"test-7.cdiff", flip(read("test-2.cdiff"), 40), nil, cvd.CheckCDiff},                          // a bit in the script
		{"test-6.cvd", read("test-6.cvd"), read("test-5.cvd.sign"), cvd.CheckSign},                     // someone else's .sign
		{"test.cvd", append(bytes.Clone(hdr6[:512]), []byte("not gzip at all")...), nil, cvd.CheckMD5}, // valid header, junk body
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.content, 0o644); err != nil {
				t.Fatal(err)
			}
			if c.sign != nil {
				if err := os.WriteFile(p+".sign", c.sign, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, errOut, code := runAvfleet(t, "mirror", "import", "--config", e.cfg, "--json", p)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			var res struct{ Results []Result }
			if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Results) != 1 {
				t.Fatalf("output %s: %v", out, err)
			}
			r := res.Results[0]
			if r.Outcome != Rejected || r.Check != c.check {
				t.Fatalf("got %s by %q (%s), want rejected by %q", r.Outcome, r.Check, r.Reason, c.check)
			}
			reason, err := os.ReadFile(filepath.Join(e.data, r.StoredAs+".reason"))
			if err != nil || !strings.Contains(string(reason), ": "+string(c.check)+": ") {
				t.Errorf(".reason %q: %v", reason, err)
			}
		})
	}

	// status names every check, newest first.
	out, _, code := runAvfleet(t, "mirror", "status", "--config", e.cfg, "--json")
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status: %d %v\n%s", code, err, out)
	}
	if len(st.Rejections) != len(cases) {
		t.Fatalf("status lists %d rejections, want %d", len(st.Rejections), len(cases))
	}
	for i, c := range cases {
		if got := st.Rejections[len(cases)-1-i]; got.Check != string(c.check) || !strings.HasSuffix(got.File, c.name) {
			t.Errorf("status rejection %d: %s %s, want %s %s", i, got.File, got.Check, c.name, c.check)
		}
	}
	if len(st.Databases) != 1 || st.Databases[0].Version != 6 || len(st.Databases[0].Rejections) == 0 {
		t.Errorf("status databases: %+v", st.Databases)
	}
	text, _, _ := runAvfleet(t, "mirror", "status", "--config", e.cfg)
	for _, c := range cases {
		if !strings.Contains(text, string(c.check)) {
			t.Errorf("text status does not name check %s:\n%s", c.check, text)
		}
	}

	// Nothing served changed.
	after := e.servedFiles(t, c, e.manifest(t, c))
	if len(after) != len(before) {
		t.Fatalf("served %d files before, %d after", len(before), len(after))
	}
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s changed", p)
		}
	}
	if m2 := e.manifest(t, c); m2.ETag != man.ETag {
		t.Errorf("manifest changed: %s -> %s", man.ETag, m2.ETag)
	}
	for _, want := range []string{`avfleet_mirror_rejections_total{check="format"} 2`, `avfleet_mirror_rejections_total{check="version"} 1`, `avfleet_mirror_rejections_total{check="body-md5"} 4`} {
		series, val, _ := strings.Cut(want, "} ")
		if got := scrapeValue(t, e, series+"}"); fmt.Sprint(got) != val {
			t.Errorf("%s: got %v", want, got)
		}
	}
	m.stop(t)
}

// TestImportRejectsCDiffThatDoesNotChain: at version 1, test-3.cdiff (2 -> 3)
// has nothing to apply to.
func TestImportRejectsCDiffThatDoesNotChain(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	e := newMirrorEnv(t, "")
	out, errOut, code := runAvfleet(t, "mirror", "import", "--config", e.cfg, filepath.Join(td, "test-1.cvd"), filepath.Join(td, "test-3.cdiff"))
	if code != 1 || !strings.Contains(out, "accepted  "+filepath.Join(td, "test-1.cvd")) ||
		!strings.Contains(out, "rejected  "+filepath.Join(td, "test-3.cdiff")+": check version: ") ||
		!strings.Contains(out, "does not apply to verified version 1 (needs 2)") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

// TestHoldAndRollbackSeenByClients: the CLI pins a database while the daemon
// runs, and every client sees the pinned version: manifest and files.
func TestHoldAndRollbackSeenByClients(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	e := newMirrorEnv(t, "")
	importTestChain(t, e, td, true)
	m := e.startMirror(t)
	c := e.client(t, "node1")
	cli := func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := runAvfleet(t, append([]string{"mirror", args[0], "--config", e.cfg}, args[1:]...)...)
		if code != want {
			t.Fatalf("mirror %v: exit %d, want %d\n%s%s", args, code, want, out, errOut)
		}
		return out
	}
	served := func() api.Database {
		man := e.manifest(t, c)
		if len(man.Databases) != 1 {
			t.Fatalf("manifest %+v", man)
		}
		return man.Databases[0]
	}
	headerVersion := func(path string) string {
		b := e.fetch(t, c, path)
		return strings.Split(string(b[:512]), ":")[2]
	}
	if out := cli(0, "hold", "test"); !strings.Contains(out, "test held at version 6") {
		t.Errorf("hold: %s", out)
	}
	waitFor(t, "held in manifest", func() bool { return served().Held })
	cli(0, "rollback", "test", "4")
	waitFor(t, "rollback in manifest", func() bool { d := served(); return d.Version == 4 && d.RolledBack })
	d := served()
	if d.Path != "/test.cld" || d.FullVersion != 1 || d.CDiffs == nil || d.CDiffs.To != 4 {
		t.Errorf("rolled-back entry %+v", d)
	}
	if v := headerVersion("/test.cld"); v != "4" {
		t.Errorf("/test.cld is version %s", v)
	}
	if v := headerVersion("/test.cvd"); v != "1" {
		t.Errorf("/test.cvd is version %s", v)
	}
	r, err := c.Get("https://" + e.https + "/test-5.cdiff")
	if err != nil || r.StatusCode != 404 {
		t.Errorf("cdiff past the rollback: %v %v", r.StatusCode, err)
	}
	if out := cli(0, "status"); !strings.Contains(out, "ROLLED BACK") {
		t.Errorf("status:\n%s", out)
	}
	cli(1, "rollback", "test", "99")
	cli(1, "hold", "nope")
	cli(2, "rollback", "test", "four")
	cli(0, "release", "test")
	waitFor(t, "release", func() bool { d := served(); return d.Version == 6 && !d.RolledBack && !d.Held })
	m.stop(t)
}
