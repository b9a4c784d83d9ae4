package agent

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
)

// TestAgentOrganisationDatabase: a database signed with an organisation's
// key (avfleet cvd build) reaches clamd as a CUD, since clamd trusts only
// ClamAV's key in a CVD; a node whose trust section lacks that key refuses it
// even though the mirror accepted it, and still installs ClamAV's database.
func TestAgentOrganisationDatabase(t *testing.T) {
	sample := []byte("avfleet organisation test sample " + strings.Repeat("x", 40))
	dbFile, orgKey := orgDatabase(t, map[string]string{"acme.hdb": hdbLine(sample, "Acme.Test.Sample-1")})

	certs := pki(t, "node1", "node2")
	m := startMirrorWith(t, certs, t.TempDir(), "127.0.0.1:0", []string{orgKey})
	m.importFiles("test-3.cvd")
	m.importPaths(dbFile)

	cfg := agentConfig(t, certs, "node1", m.addr)
	cfg.Trust.CVDKeys = []string{orgKey}
	a := startAgent(t, cfg, nil)
	a.waitReady(t, 30*time.Second)
	eventually(t, 10*time.Second, "acme installed", func() bool { return a.Updater().Status().Installed["acme"] == 1 })
	// Without daily the newest database dates the set: acme, built an hour
	// ago, not test (2021), so the node is not stale by age.
	if v := metric(t, a.reg, "avfleet_agent_definitions_stale_reason", "reason=age"); v != 0 {
		t.Errorf("stale by age with acme built an hour ago: %v (built at %v)", v, a.Updater().Status().BuiltAt)
	}
	cur, err := a.Store().Current()
	if err != nil {
		t.Fatal(err)
	}
	if d := cur.DBs["acme"]; d == nil || d.Kind != cvd.KindCUD {
		t.Fatalf("acme installed as %+v, want a cud", d)
	}
	// clamd marks signatures from databases it did not verify itself.
	if got := scan(t, a.ClamdAddr(), sample); got != "Acme.Test.Sample-1.UNOFFICIAL" {
		t.Fatalf("clamd says %q for the organisation's sample", got)
	}
	if got := scan(t, a.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Fatalf("EICAR: %q", got)
	}

	// node2 does not trust the organisation key: it installs ClamAV's
	// database and refuses acme.
	cfg2 := agentConfig(t, certs, "node2", m.addr)
	b := startAgent(t, cfg2, nil)
	eventually(t, 10*time.Second, "node2 refuses acme", func() bool {
		return strings.Contains(b.Updater().Status().LastError, "acme")
	})
	t.Logf("node2: %s", b.Updater().Status().LastError)
	if _, ok := b.Updater().Status().Installed["acme"]; ok {
		t.Fatal("node2 installed a database signed with a key it does not trust")
	}
	// ... and is protected by the databases it does trust.
	b.waitReady(t, 30*time.Second)
	if got := scan(t, b.ClamdAddr(), eicar); got != "Eicar-Test-Signature" {
		t.Fatalf("node2: EICAR: %q", got)
	}
}

// orgDatabase builds acme.cvd version 1, signed with a new organisation key
// (returned as its PEM path), holding the given signature files.
func orgDatabase(t *testing.T, files map[string]string) (dbFile, pubKey string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := cvd.WriteKeyPair(filepath.Join(dir, "org"), false); err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(filepath.Join(dir, "org.key"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := cvd.ParsePrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	dbFile = filepath.Join(dir, "acme.cvd")
	f, err := os.Create(dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := cvd.Build(f, cvd.BuildOptions{Name: "acme", Version: 1, Key: pk, Files: paths, Time: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return dbFile, filepath.Join(dir, "org.pub.pem")
}

// hdbLine is a ClamAV .hdb signature (MD5:size:name) for sample.
func hdbLine(sample []byte, name string) string {
	sum := md5.Sum(sample)
	return hex.EncodeToString(sum[:]) + ":" + itoa(len(sample)) + ":" + name + "\n"
}
