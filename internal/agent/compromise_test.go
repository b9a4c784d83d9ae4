package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/testutil"
)

// publishForged plays a compromised mirror: it writes a set straight into the
// mirror's data directory (bypassing its verifier) whose test.cvd is file,
// with an index (and so a manifest) that vouches for it as version, and points
// verified/ at it. The mirror daemon serves it within its poll interval.
func (m *testMirror) publishForged(t *testing.T, gen int, file []byte, version uint) {
	t.Helper()
	data := m.cfg.DataDir
	cur, err := os.ReadFile(filepath.Join(data, "verified", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]any
	if err := json.Unmarshal(cur, &idx); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	sha := hex.EncodeToString(sum[:])
	idx["generation"] = gen
	idx["published_at"] = time.Now().UTC().Format(time.RFC3339)
	db := idx["databases"].([]any)[0].(map[string]any)
	for k, v := range map[string]any{"version": version, "kind": "cvd", "path": "/test.cvd", "size": len(file), "sha256": sha,
		"full_version": version, "full_path": "/test.cvd", "full_size": len(file), "full_sha256": sha,
		"sign_path": "", "full_sign_path": "", "cdiffs": nil, "cdiff_files": []any{}} {
		db[k] = v
	}
	idx["files"] = []any{map[string]any{"name": "test.cvd", "database": "test", "kind": "cvd", "version": version,
		"size": len(file), "sha256": sha, "mod_time": time.Now().UTC().Format(time.RFC3339Nano)}}
	dir := filepath.Join(data, "sets", strconv.Itoa(gen))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.cvd"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(data, "verified.forged")
	if err := os.Symlink("sets/"+strconv.Itoa(gen), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(data, "verified")); err != nil {
		t.Fatal(err)
	}
}

// TestAgentRefusesCompromisedMirror: the mirror serves, with a manifest that
// vouches for it, a test-4.cvd whose body was altered (one byte), then the
// genuine, correctly signed test-2.cvd announced as version 4 (a downgrade
// dressed as an update), then the same set with test.cvd overwritten in
// place. The agent downloads each, refuses it (its own verifier; the
// manifest's SHA-256 for the last), keeps clamd on version 3, and says why:
// in its metrics, its status and its report to the mirror.
func TestAgentRefusesCompromisedMirror(t *testing.T) {
	certs := pki(t, "node1")
	m := startMirror(t, certs, t.TempDir(), "127.0.0.1:0")
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", m.addr)
	a := startAgent(t, cfg, nil)
	a.waitReady(t, 30*time.Second)

	genuine4, err := os.ReadFile(filepath.Join(testutil.ClamAVTestdata(t), "test-4.cvd"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), genuine4...)
	tampered[len(tampered)-100] ^= 0x01

	m.publishForged(t, 98, tampered, 4)
	eventually(t, 10*time.Second, "agent refuses the forged database", func() bool {
		return strings.Contains(a.Updater().Status().LastError, "verify")
	})
	st := a.Updater().Status()
	t.Logf("agent says: %s", st.LastError)
	if st.Installed["test"] != 3 {
		t.Fatalf("installed %v after the forged update", st.Installed)
	}
	if !strings.Contains(st.LastError, "body-md5") && !strings.Contains(st.LastError, "archive") {
		t.Errorf("error %q does not name the failed check", st.LastError)
	}
	if got := metric(t, a.reg, "avfleet_agent_update_failures_total", "reason=verify"); got < 1 {
		t.Errorf("update_failures_total{reason=verify} = %v", got)
	}
	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Errorf("clamd after the refused update: %q", got)
	}
	cur, err := a.Store().Current()
	if err != nil || cur.Versions()["test"] != 3 {
		t.Fatalf("db dir holds %v, %v", cur.Versions(), err)
	}
	old, err := os.ReadFile(filepath.Join(testutil.ClamAVTestdata(t), "test-2.cvd"))
	if err != nil {
		t.Fatal(err)
	}
	m.publishForged(t, 99, old, 4)
	eventually(t, 10*time.Second, "agent refuses the old database sold as new", func() bool {
		return strings.Contains(a.Updater().Status().LastError, "the file is version 2, the manifest says 4")
	})
	if v := a.Updater().Status().Installed["test"]; v != 3 {
		t.Fatalf("installed %d", v)
	}

	// A file overwritten in place in verified/, under the manifest's nose:
	// its size and SHA-256 no longer match what the manifest promised.
	if err := os.WriteFile(filepath.Join(m.cfg.DataDir, "verified", "test.cvd"), tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "agent refuses the overwritten file", func() bool {
		return strings.Contains(a.Updater().Status().LastError, "download https://")
	})
	if got := metric(t, a.reg, "avfleet_agent_update_failures_total", "reason=checksum"); got < 1 {
		t.Errorf("update_failures_total{reason=checksum} = %v", got)
	}
	if v := a.Updater().Status().Installed["test"]; v != 3 {
		t.Fatalf("installed %d", v)
	}

	// The mirror is told why (last_error in the node report).
	eventually(t, 10*time.Second, "report with the refusal reaches the mirror", func() bool {
		recs, err := m.d.Store().State().NodeReports()
		if err != nil || len(recs) != 1 {
			return false
		}
		var r NodeReport
		return json.Unmarshal(recs[0].Report, &r) == nil && strings.Contains(r.LastError, "download https://") && r.Databases["test"] == 3
	})
}
