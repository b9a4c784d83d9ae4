package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/cvd"
)

func retention(cdiffs, versions int) config.Retention {
	return config.Retention{CDiffs: cdiffs, Versions: versions}
}

func mustImport(t *testing.T, s *Store, paths ...string) []Result {
	t.Helper()
	res, err := s.Import(context.Background(), paths)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return res
}

func outcomes(res []Result) map[string]Outcome {
	m := map[string]Outcome{}
	for _, r := range res {
		m[filepath.Base(r.File)] = r.Outcome
	}
	return m
}

// servedHashes hashes every file of the published set as a client would get it.
func servedHashes(t *testing.T, s *Store) map[string]string {
	t.Helper()
	set, err := s.current()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name := range set.files {
		b, err := os.ReadFile(filepath.Join(set.dir, name))
		if err != nil {
			t.Fatalf("served file %s: %v", name, err)
		}
		sum := sha256.Sum256(b)
		out[name] = hex.EncodeToString(sum[:])
		if out[name] != set.files[name].SHA256 {
			t.Fatalf("served %s does not match its index entry", name)
		}
	}
	return out
}

func servedNames(t *testing.T, s *Store) []string {
	t.Helper()
	var names []string
	for n := range servedHashes(t, s) {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func manifestDB(t *testing.T, s *Store, name string) (m struct {
	Version, FullVersion uint
	Kind, Path           string
	From, To             uint
	Held, RolledBack     bool
}) {
	t.Helper()
	man, err := s.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range man.Databases {
		if d.Name == name {
			m.Version, m.FullVersion, m.Kind, m.Path, m.Held, m.RolledBack = d.Version, d.FullVersion, d.Kind, d.Path, d.Held, d.RolledBack
			if d.CDiffs != nil {
				m.From, m.To = d.CDiffs.From, d.CDiffs.To
			}
			return m
		}
	}
	t.Fatalf("database %s not in manifest %+v", name, man)
	return m
}

func TestImportOrdersChainsAndServesFullCVD(t *testing.T) {
	s, fv := newTestStore(t, 5)
	// Given in an unhelpful order; the store sorts by version, cdiff first.
	p := writeFiles(t,
		"test-3.cvd", fakeDB("test", 3, cvd.KindCVD, "clamav"),
		"test-3.cdiff", fakeCDiff(3, false),
		"test-1.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"),
		"test-2.cdiff", fakeCDiff(2, false),
	)
	res := mustImport(t, s, p...)
	for name, o := range outcomes(res) {
		if o != Accepted {
			t.Errorf("%s: %s, want accepted (%+v)", name, o, res)
		}
	}
	if res[0].File != p[2] || res[1].File != p[3] || res[2].File != p[1] || res[3].File != p[0] {
		t.Errorf("processing order %v", res)
	}
	if fv.patches != 2 {
		t.Errorf("patched %d times, want 2 (one per cdiff)", fv.patches)
	}
	m := manifestDB(t, s, "test")
	if m.Version != 3 || m.Kind != "cvd" || m.Path != "/test.cvd" || m.FullVersion != 3 || m.From != 2 || m.To != 3 {
		t.Errorf("manifest %+v", m)
	}
	if got, want := strings.Join(servedNames(t, s), " "), "test-2.cdiff test-3.cdiff test.cvd"; got != want {
		t.Errorf("served %q, want %q", got, want)
	}
}

func TestCLDServedWhenCDiffsPassTheFullCVD(t *testing.T) {
	s, _ := newTestStore(t, 5)
	mustImport(t, s, writeFiles(t,
		"test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"),
		"test-2.cdiff", fakeCDiff(2, false),
		"test-3.cdiff", fakeCDiff(3, false))...)
	m := manifestDB(t, s, "test")
	if m.Version != 3 || m.Kind != "cld" || m.Path != "/test.cld" || m.FullVersion != 1 || m.From != 2 || m.To != 3 {
		t.Errorf("manifest %+v", m)
	}
	if got, want := strings.Join(servedNames(t, s), " "), "test-2.cdiff test-3.cdiff test.cld test.cvd"; got != want {
		t.Errorf("served %q, want %q", got, want)
	}
}

func TestRejectionsAreLoggedAndChangeNothingServed(t *testing.T) {
	s, _ := newTestStore(t, 5)
	mustImport(t, s, writeFiles(t,
		"test-1.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"),
		"test-2.cdiff", fakeCDiff(2, false),
		"test-3.cvd", fakeDB("test", 3, cvd.KindCVD, "clamav"))...)
	before := servedHashes(t, s)
	gen := mustGen(t, s)
	cases := []struct {
		name    string
		content []byte
		check   cvd.Check
		reason  string
	}{
		{"daily.cvd", []byte("<html><body>502 Bad Gateway</body></html>"), cvd.CheckFormat, "format"},
		{"test-2.cvd", fakeDB("test", 2, cvd.KindCVD, "clamav"), cvd.CheckVersion, "not newer than verified version 3"},
		{"test-5.cdiff", fakeCDiff(5, false), cvd.CheckVersion, "does not apply to verified version 3"},
		{"test-4.cdiff", fakeCDiff(4, true), cvd.CheckDSig, "applying it to verified version 3"},
		{"test-9.cdiff", fakeCDiff(4, false), cvd.CheckVersion, "file name says version 9"},
		{"what.cdiff", fakeCDiff(4, false), cvd.CheckFormat, "must be named DB-VERSION.cdiff"},
		{"test-4.cud", fakeDB("test", 4, cvd.KindCUD, "unsigned"), cvd.CheckSignature, "signed by ClamAV"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := mustImport(t, s, writeFiles(t, c.name, c.content)...)
			r := res[0]
			if r.Outcome != Rejected || r.Check != c.check || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("got %+v, want rejected by %s with %q", r, c.check, c.reason)
			}
			if !strings.HasPrefix(r.Reason, "verify ") || strings.Contains(r.Reason, "\n") {
				t.Errorf("reason is not one VerifyError line: %q", r.Reason)
			}
			b, err := os.ReadFile(filepath.Join(s.opt.DataDir, r.StoredAs+".reason"))
			if err != nil || strings.TrimSpace(string(b)) != r.Reason {
				t.Errorf(".reason file: %q, %v", b, err)
			}
			if kept, err := os.ReadFile(filepath.Join(s.opt.DataDir, r.StoredAs)); err != nil || string(kept) != string(c.content) {
				t.Errorf("rejected file not kept as received: %v", err)
			}
		})
	}
	after := servedHashes(t, s)
	if len(after) != len(before) {
		t.Fatalf("served files changed: %v -> %v", before, after)
	}
	for n, h := range before {
		if after[n] != h {
			t.Errorf("served %s changed", n)
		}
	}
	if g := mustGen(t, s); g != gen {
		t.Errorf("rejections published a new set: generation %d -> %d", gen, g)
	}
	counts, err := s.State().Counters("rejections")
	if err != nil {
		t.Fatal(err)
	}
	if counts["version"] != 3 || counts["format"] != 2 || counts["info-dsig"] != 1 || counts["header-signature"] != 1 {
		t.Errorf("rejections by check: %v", counts)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Rejections) != len(cases) || st.Rejections[0].Check != string(cvd.CheckSignature) {
		t.Errorf("status rejections: %+v", st.Rejections)
	}
	var daily *DBStatus
	for i := range st.Databases {
		if st.Databases[i].Name == "daily" {
			daily = &st.Databases[i]
		}
	}
	if daily != nil {
		t.Errorf("a rejected file made database daily appear: %+v", daily)
	}
}

func mustGen(t *testing.T, s *Store) uint64 {
	t.Helper()
	set, err := s.current()
	if err != nil {
		t.Fatal(err)
	}
	return set.index.Generation
}

func TestSameVersionIsIgnored(t *testing.T) {
	s, _ := newTestStore(t, 5)
	p := writeFiles(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"), "test-2.cdiff", fakeCDiff(2, false))
	mustImport(t, s, p...)
	gen := mustGen(t, s)
	res := mustImport(t, s, p...)
	for _, r := range res {
		if r.Outcome != Ignored {
			t.Errorf("%s: %s, want ignored", r.File, r.Outcome)
		}
	}
	if g := mustGen(t, s); g != gen {
		t.Errorf("re-import published generation %d (was %d)", g, gen)
	}
}

func TestHoldReleaseRollback(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t, 5)
	mustImport(t, s, writeFiles(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"),
		"test-2.cdiff", fakeCDiff(2, false), "test-3.cdiff", fakeCDiff(3, false), "test-4.cdiff", fakeCDiff(4, false))...)
	if p, err := s.Hold(ctx, "test"); err != nil || p.Version != 4 {
		t.Fatalf("hold: %+v %v", p, err)
	}
	mustImport(t, s, writeFiles(t, "test-5.cdiff", fakeCDiff(5, false))...)
	if m := manifestDB(t, s, "test"); m.Version != 4 || !m.Held || m.To != 4 {
		t.Fatalf("held database moved: %+v", m)
	}
	if had, err := s.Release(ctx, "test"); err != nil || !had {
		t.Fatalf("release: %v %v", had, err)
	}
	if m := manifestDB(t, s, "test"); m.Version != 5 || m.Held {
		t.Fatalf("after release: %+v", m)
	}
	if _, err := s.Rollback(ctx, "test", 2); err != nil {
		t.Fatal(err)
	}
	m := manifestDB(t, s, "test")
	if m.Version != 2 || !m.RolledBack || m.Kind != "cld" || m.To != 2 || m.FullVersion != 1 {
		t.Fatalf("after rollback to 2: %+v", m)
	}
	for _, n := range servedNames(t, s) {
		if n == "test-3.cdiff" || n == "test-5.cdiff" {
			t.Errorf("rolled-back set serves %s", n)
		}
	}
	// A hold of a rolled-back database keeps the rolled-back version.
	if p, err := s.Hold(ctx, "test"); err != nil || p.Version != 2 {
		t.Fatalf("hold after rollback: %+v %v", p, err)
	}
	if _, err := s.Rollback(ctx, "test", 9); !errors.Is(err, ErrNoSuchVersion) {
		t.Errorf("rollback to a version never held: %v", err)
	}
	if _, err := s.Hold(ctx, "nope"); !errors.Is(err, ErrUnknownDatabase) {
		t.Errorf("hold of unknown database: %v", err)
	}
	if _, err := s.Release(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if m := manifestDB(t, s, "test"); m.Version != 5 {
		t.Fatalf("after release: %+v", m)
	}
}

func TestRetentionKeepsWhatIsServed(t *testing.T) {
	s, _ := newTestStore(t, 2)
	s.opt.Retention.CDiffs = 3
	files := []any{"test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav")}
	for v := uint(2); v <= 7; v++ {
		files = append(files, "test-"+itoa(v)+".cdiff", fakeCDiff(v, false))
	}
	mustImport(t, s, writeFiles(t, files...)...)
	m := manifestDB(t, s, "test")
	if m.Version != 7 || m.FullVersion != 1 || m.From != 5 || m.To != 7 {
		t.Fatalf("manifest %+v", m)
	}
	cat, err := loadCatalog(s.history, false)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	h := cat["test"]
	for _, v := range h.sortedVersions() {
		f := h.versions[v]
		for _, m := range []*fileMeta{f.full, f.cld, f.cdiff} {
			if m != nil {
				have = append(have, itoa(v)+"/"+m.Name)
			}
		}
	}
	// cld of 6 and 7 (retention.versions 2), cdiffs 5..7 (retention.cdiffs
	// 3), and version 1's full CVD: it is /test.cvd.
	want := "7/test.cld 7/test-7.cdiff 6/test.cld 6/test-6.cdiff 5/test-5.cdiff 1/test.cvd"
	if got := strings.Join(have, " "); got != want {
		t.Errorf("history after retention:\n got %s\nwant %s", got, want)
	}
	if _, err := s.Rollback(context.Background(), "test", 3); !errors.Is(err, ErrNoSuchVersion) {
		t.Errorf("rollback to a pruned version: %v", err)
	}
}

func itoa(v uint) string { return strconv.FormatUint(uint64(v), 10) }

func TestIncomingSkipsFilesBeingWritten(t *testing.T) {
	s, _ := newTestStore(t, 5)
	for _, n := range []string{".tmp-test.cvd-abc", "test.cvd.part", "test.cvd.tmp", ".hidden.cvd"} {
		if err := os.WriteFile(filepath.Join(s.IncomingDir(), n), fakeDB("test", 1, cvd.KindCVD, "clamav"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutIncoming("test.cvd", strings.NewReader(string(fakeDB("test", 1, cvd.KindCVD, "clamav")))); err != nil {
		t.Fatal(err)
	}
	p, err := s.Pending()
	if err != nil || len(p) != 1 || p[0] != "test.cvd" {
		t.Fatalf("pending %v %v", p, err)
	}
	res, err := s.ProcessIncoming(context.Background())
	if err != nil || len(res) != 1 || res[0].Outcome != Accepted {
		t.Fatalf("process: %+v %v", res, err)
	}
	left, _ := os.ReadDir(s.IncomingDir())
	if len(left) != 4 {
		t.Errorf("files being written were touched: %d left", len(left))
	}
}

func TestSignTravelsWithItsFile(t *testing.T) {
	s, _ := newTestStore(t, 5)
	p := writeFiles(t,
		"test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"),
		"test-1.cvd.sign", []byte("#clamsign-1.0\nsig-of-1\n"),
		"test-2.cdiff", fakeCDiff(2, false),
		"test-2.cdiff.sign", []byte("#clamsign-1.0\nsig-of-2\n"))
	res := mustImport(t, s, p...) // the .sign of the cdiff is given too: it travels, not imported alone
	if len(res) != 2 {
		t.Fatalf("results %+v", res)
	}
	got := strings.Join(servedNames(t, s), " ")
	if want := "test-1.cvd.sign test-2.cdiff test-2.cdiff.sign test.cld test.cvd"; got != want {
		t.Errorf("served %q, want %q", got, want)
	}
	man, _ := s.Manifest()
	d := man.Databases[0]
	if d.FullSignPath != "/test-1.cvd.sign" || d.CDiffFiles[0].SignPath != "/test-2.cdiff.sign" {
		t.Errorf("manifest sign paths: %+v", d)
	}
	// The seam upstream sync uses: .sign first, then the file, then Ingest.
	if err := s.PutIncoming("test-3.cdiff.sign", strings.NewReader("#clamsign-1.0\nsig-of-3\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIncoming("test-3.cdiff", strings.NewReader(string(fakeCDiff(3, false)))); err != nil {
		t.Fatal(err)
	}
	r, err := s.Ingest(context.Background(), "test-3.cdiff", "sync")
	if err != nil || r.Outcome != Accepted || r.Version != 3 {
		t.Fatalf("ingest: %+v %v", r, err)
	}
	if h := servedHashes(t, s); h["test-3.cdiff.sign"] == "" {
		t.Errorf("sign of an ingested cdiff not served: %v", h)
	}
	if left, _ := os.ReadDir(s.IncomingDir()); len(left) != 0 {
		t.Errorf("incoming not empty after ingest: %d files", len(left))
	}
}

func TestLoneSignIsRefused(t *testing.T) {
	s, _ := newTestStore(t, 5)
	res := mustImport(t, s, writeFiles(t, "test-1.cvd.sign", []byte("#clamsign-1.0\n"))...)
	if len(res) != 1 || res[0].Outcome != Rejected || res[0].Check != cvd.CheckSign {
		t.Fatalf("%+v", res)
	}
}

// TestRecoveryAfterCrash builds what a process killed mid-import leaves —
// a file being verified in work/, a history file without sidecar, a set
// directory and a link not yet renamed — and checks the next lock holder
// serves the last complete set and finishes the interrupted import.
func TestRecoveryAfterCrash(t *testing.T) {
	s, _ := newTestStore(t, 5)
	mustImport(t, s, writeFiles(t, "test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav"))...)
	before := servedHashes(t, s)
	dd := s.opt.DataDir
	in := filepath.Join(s.work, "20260101T000000.000000000Z-dead", "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(in, "test-2.cdiff"), fakeCDiff(2, false), 0o644))
	v3 := versionDir(s.history, "test", 3)
	must(os.MkdirAll(v3, 0o755))
	must(os.WriteFile(filepath.Join(v3, "test.cld"), fakeDB("test", 3, cvd.KindCLD, "clamav"), 0o644)) // no sidecar
	must(os.MkdirAll(filepath.Join(dd, setsDirName, tempPrefix+"99-x"), 0o755))
	must(os.Symlink("sets/99", filepath.Join(dd, tempPrefix+"verified-x")))

	// Readers see the old set until the next lock holder runs.
	if got := servedHashes(t, s); len(got) != len(before) {
		t.Fatalf("served set changed before recovery: %v", got)
	}
	if _, err := s.ProcessIncoming(context.Background()); err != nil { // nothing pending: no lock
		t.Fatal(err)
	}
	if err := s.withLock(context.Background(), func(*locked) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(v3, "test.cld")); !os.IsNotExist(err) {
		t.Errorf("uncommitted history file kept: %v", err)
	}
	for _, p := range []string{filepath.Join(dd, setsDirName, tempPrefix+"99-x"), filepath.Join(dd, tempPrefix+"verified-x")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s kept: %v", p, err)
		}
	}
	res, err := s.ProcessIncoming(context.Background())
	if err != nil || len(res) != 1 || res[0].Outcome != Accepted {
		t.Fatalf("requeued file: %+v %v", res, err)
	}
	if m := manifestDB(t, s, "test"); m.Version != 2 {
		t.Errorf("manifest %+v", m)
	}
}

// TestRetentionKeepsTheBaseOfKeptVersions: with a newer full CVD served,
// the old one is still the base of kept CLD versions a rollback may pick.
func TestRetentionKeepsTheBaseOfKeptVersions(t *testing.T) {
	s, _ := newTestStore(t, 3)
	files := []any{"test.cvd", fakeDB("test", 1, cvd.KindCVD, "clamav")}
	for v := uint(2); v <= 6; v++ {
		files = append(files, "test-"+itoa(v)+".cdiff", fakeCDiff(v, false))
	}
	files = append(files, "test-6.cvd", fakeDB("test", 6, cvd.KindCVD, "clamav"))
	mustImport(t, s, writeFiles(t, files...)...)
	if _, err := s.Rollback(context.Background(), "test", 4); err != nil {
		t.Fatal(err)
	}
	if m := manifestDB(t, s, "test"); m.Version != 4 || m.FullVersion != 1 || m.Path != "/test.cld" {
		t.Fatalf("rolled back to 4: %+v", m)
	}
}

func TestIncomingScanWaitsForFilesToSettle(t *testing.T) {
	s, _ := newTestStore(t, 5)
	p := filepath.Join(s.IncomingDir(), "test.cvd")
	must(t, os.WriteFile(p, fakeDB("test", 1, cvd.KindCVD, "clamav")[:10], 0o644)) // a cp in progress
	res, err := s.processIncoming(context.Background(), time.Hour)
	if err != nil || len(res) != 0 {
		t.Fatalf("a file still being written was processed: %+v %v", res, err)
	}
	must(t, os.WriteFile(p, fakeDB("test", 1, cvd.KindCVD, "clamav"), 0o644))
	old := time.Now().Add(-2 * time.Second)
	must(t, os.Chtimes(p, old, old))
	res, err = s.processIncoming(context.Background(), time.Second)
	if err != nil || len(res) != 1 || res[0].Outcome != Accepted {
		t.Fatalf("settled file: %+v %v", res, err)
	}
}
