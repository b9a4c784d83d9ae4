package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/testutil"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

func mirrorConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	if err := tlsutil.Init(pki, []string{"127.0.0.1"}, nil, 0); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mirror.yaml")
	y := fmt.Sprintf("data_dir: data\nlisten: \"127.0.0.1:0\"\nadmin_listen: \"\"\ntls: {cert: pki/server.crt, key: pki/server.key, client_ca: pki/ca.crt}\n%s", extra)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMirrorCheckConfig(t *testing.T) {
	cfg := mirrorConfig(t, "")
	code, out, errOut := runCLI(t, "mirror", "serve", "--config", cfg, "--check-config")
	if code != 0 || !strings.Contains(out, "data_dir: "+filepath.Join(filepath.Dir(cfg), "data")) || !strings.Contains(out, "retention:") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "TLS certificate") {
		t.Errorf("warning about a new certificate:\n%s", errOut)
	}
	// A server certificate that ends in 10 days: exit 0, and a warning.
	if err := tlsutil.IssueServer(filepath.Join(filepath.Dir(cfg), "pki"), tlsutil.Options{Hosts: []string{"127.0.0.1"}, Days: 10, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "mirror", "serve", "--config", cfg, "--check-config")
	if code != 0 || !strings.Contains(errOut, "TLS certificate expires within 30 days: renew it") || !strings.Contains(errOut, "cert=tls.cert") {
		t.Errorf("server certificate ending in 10 days: exit %d, %s", code, errOut)
	}
	os.Remove(filepath.Join(filepath.Dir(cfg), "pki", "server.key"))
	if code, _, errOut := runCLI(t, "mirror", "serve", "--config", cfg, "--check-config"); code != 2 || !strings.Contains(errOut, "server.key") {
		t.Errorf("missing key: exit %d, %s", code, errOut)
	}
	bad := mirrorConfig(t, "retention: {cdifs: 3}\n")
	if code, _, errOut := runCLI(t, "mirror", "serve", "--config", bad, "--check-config"); code != 2 || !strings.Contains(errOut, "cdifs") {
		t.Errorf("unknown key: exit %d, %s", code, errOut)
	}
}

func TestMirrorCommandsExitCodes(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	cfg := mirrorConfig(t, "")
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"mirror", "import", "--config", cfg}, 2, ""},
		{[]string{"mirror", "hold", "--config", cfg, "test"}, 1, ""},
		{[]string{"mirror", "import", "--config", cfg, filepath.Join(td, "test-1.cvd"), filepath.Join(td, "test-2.cdiff")}, 0, "accepted  " + filepath.Join(td, "test-2.cdiff") + ": test version 2 (cdiff)"},
		{[]string{"mirror", "import", "--config", cfg, filepath.Join(td, "test-1.cvd")}, 0, "ignored   "},
		{[]string{"mirror", "import", "--config", cfg, filepath.Join(td, "clamav.hdb")}, 1, "rejected  " + filepath.Join(td, "clamav.hdb") + ": check format: "},
		{[]string{"mirror", "hold", "--config", cfg, "test"}, 0, "test held at version 2"},
		{[]string{"mirror", "rollback", "--config", cfg, "test", "1"}, 0, "test rolled back to version 1"},
		{[]string{"mirror", "rollback", "--config", cfg, "test", "7"}, 1, ""},
		{[]string{"mirror", "rollback", "--config", cfg, "test"}, 2, ""},
		{[]string{"mirror", "release", "--config", cfg, "test"}, 0, "test released"},
		{[]string{"mirror", "release", "--config", cfg, "test"}, 0, "test was not held"},
		{[]string{"mirror", "status", "--config", cfg}, 0, "nodes: 0 total"},
		{[]string{"mirror", "status", "--config", filepath.Join(t.TempDir(), "none.yaml")}, 2, ""},
	} {
		code, out, errOut := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("%v: exit %d (want %d)\n%s%s", c.args[1:], code, c.code, out, errOut)
		}
	}
	code, out, _ := runCLI(t, "mirror", "status", "--config", cfg, "--json")
	var st struct {
		Databases []struct {
			Name    string
			Version uint
			CDiffs  struct{ From, To uint }
		}
		RecentRejections []struct{ Check string } `json:"recent_rejections"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st.Databases) != 1 || st.Databases[0].Version != 2 || st.Databases[0].CDiffs.To != 2 || len(st.RecentRejections) != 1 || st.RecentRejections[0].Check != "format" {
		t.Errorf("status: %+v", st)
	}
}

func TestMirrorHelp(t *testing.T) {
	root := newRootCommand(&globalOptions{})
	mirror, _, err := root.Find([]string{"mirror"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range mirror.Commands() {
		if c.Short == "" || c.Example == "" || !strings.Contains(c.Long, "Exit codes:") {
			t.Errorf("mirror %s: help needs Short, Example and exit codes in Long", c.Name())
		}
	}
}

// A database upstream sync tried but never verified is listed with the
// sync's error; the heading does not tell the operator to enable sync.
func TestMirrorStatusShowsFailedFirstSync(t *testing.T) {
	cfg := mirrorConfig(t, "")
	st, err := mirror.Open(mirror.Options{DataDir: filepath.Join(filepath.Dir(cfg), "data")})
	if err != nil {
		t.Fatal(err)
	}
	err = st.State().SetSyncResult(mirror.SyncResult{Database: "daily", CheckedAt: time.Now(), Result: "failed",
		Error: "https://database.clamav.net/daily.cvd answered 500 Internal Server Error"})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "mirror", "status", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "daily ") {
			row = l
		}
	}
	if !strings.Contains(out, "nothing verified yet: upstream sync has not brought a database yet") ||
		!strings.Contains(row, "nothing verified") || !strings.Contains(row, "failed") || !strings.Contains(row, "answered 500 Internal Server Error") {
		t.Errorf("status does not show the failed first sync of daily:\n%s", out)
	}
}
