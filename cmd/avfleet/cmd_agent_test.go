package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/testutil"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

type cliMirror struct {
	d      *mirror.Daemon
	cancel context.CancelFunc
	done   chan error
}

func startCLIMirror(t *testing.T, certs, data string) *cliMirror {
	t.Helper()
	c := config.DefaultMirror()
	c.DataDir, c.Listen, c.AdminListen = data, "127.0.0.1:0", ""
	c.TLS = config.TLS{Cert: filepath.Join(certs, "server.crt"), Key: filepath.Join(certs, "server.key"), ClientCA: filepath.Join(certs, "ca.crt")}
	d, err := mirror.NewDaemon(mirror.DaemonOptions{Config: &c, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &cliMirror{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- d.Run(ctx) }()
	t.Cleanup(m.stop)
	return m
}

func (m *cliMirror) stop() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
		m.cancel = nil
	}
}

func (m *cliMirror) importFiles(t *testing.T, names ...string) {
	t.Helper()
	td := testutil.ClamAVTestdata(t)
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(td, n))
	}
	if _, err := m.d.Store().Import(context.Background(), paths); err != nil {
		t.Fatal(err)
	}
}

func writeAgentYAML(t *testing.T, dir, certs, node, addr string) string {
	t.Helper()
	state, err := os.MkdirTemp("", "avf-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	y := `node_name: ` + node + `
state_dir: ` + state + `
mirror:
  urls: ["https://` + addr + `"]
  ca: ` + filepath.Join(certs, "ca.crt") + `
  cert: ` + filepath.Join(certs, "node1.crt") + `
  key: ` + filepath.Join(certs, "node1.key") + `
  timeout: 5s
scan:
  schedule: {interval: disabled}
report:
  metrics_listen: "127.0.0.1:0"
`
	p := filepath.Join(dir, node+".yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentUpdateCommand(t *testing.T) {
	testutil.NeedCommand(t, "clamd")
	certs := t.TempDir()
	if err := tlsutil.Init(certs, []string{"127.0.0.1"}, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	m := startCLIMirror(t, certs, t.TempDir())
	m.importFiles(t, "test-3.cvd")
	cfg := writeAgentYAML(t, t.TempDir(), certs, "node1", m.d.Addr("https"))
	ctx := context.Background()

	steps := []struct {
		name   string
		before func()
		code   int
		want   []string
	}{
		{"first install", nil, 0, []string{"test: none -> 3 (full)", "downloaded 9483 bytes"}},
		{"nothing new", nil, 0, []string{"test: 3 (current)"}},
		{"cdiffs", func() { m.importFiles(t, "test-4.cdiff", "test-5.cdiff", "test-6.cdiff") }, 0, []string{"test: 3 -> 6 (cdiff)"}},
		{"mirror down", m.stop, 1, []string{"update failed: get manifest:", "installed (unchanged): test 6"}},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		code, out, errOut := runCLICtx(t, ctx, "agent", "update", "--config", cfg)
		if code != s.code {
			t.Fatalf("%s: exit %d, want %d\n%s%s", s.name, code, s.code, out, errOut)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", s.name, w, out)
			}
		}
	}
}

func TestAgentRunCommand(t *testing.T) {
	testutil.NeedCommand(t, "clamd")
	certs := t.TempDir()
	if err := tlsutil.Init(certs, []string{"127.0.0.1"}, []string{"node1"}, 0); err != nil {
		t.Fatal(err)
	}
	m := startCLIMirror(t, certs, t.TempDir())
	m.importFiles(t, "test-3.cvd")
	dir := t.TempDir()
	cfg := writeAgentYAML(t, dir, certs, "node1", m.d.Addr("https"))

	code, out, errOut := runCLICtx(t, context.Background(), "agent", "run", "--config", cfg, "--check-config")
	if code != 0 || !strings.Contains(out, "node_name: node1") {
		t.Fatalf("--check-config: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "TLS certificate") {
		t.Errorf("--check-config warns about a new certificate:\n%s", errOut)
	}
	// A node certificate that ends in 10 days: still exit 0, with a warning.
	if err := tlsutil.IssueWith(certs, "node1", tlsutil.Options{Days: 10, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLICtx(t, context.Background(), "agent", "run", "--config", cfg, "--check-config")
	if code != 0 || !strings.Contains(errOut, "TLS certificate expires within 30 days: renew it") || !strings.Contains(errOut, "cert=mirror.cert") {
		t.Fatalf("--check-config with a certificate ending in 10 days: exit %d\n%s", code, errOut)
	}
	bad := writeAgentYAML(t, dir, certs, "web-7", m.d.Addr("https"))
	code, _, errOut = runCLICtx(t, context.Background(), "agent", "run", "--config", bad, "--check-config")
	if code != 2 || !strings.Contains(errOut, `node_name "web-7" does not match the client certificate's CN "node1"`) {
		t.Fatalf("--check-config with a wrong node_name: exit %d\n%s", code, errOut)
	}

	// The daemon: SIGHUP applies a new allowlist; it runs until its context
	// ends (SIGTERM in main), exit 0.
	ld, err := config.LoadAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eicar := []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		c, _ := clamd.NewClient("unix://" + filepath.Join(ld.StateDir, "clamd.sock"))
		found := func() string {
			sctx, sc := context.WithTimeout(ctx, 5*time.Second)
			defer sc()
			r, err := c.ScanStream(sctx, strings.NewReader(string(eicar)))
			if err != nil {
				return "error: " + err.Error()
			}
			return r.Signature
		}
		wait := func(what string, ok func() bool) bool {
			for range 300 {
				if ok() {
					return true
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Errorf("agent run: %s: not within 30 s", what)
			return false
		}
		if !wait("clamd finds EICAR", func() bool { return found() == "Eicar-Test-Signature" }) {
			return
		}
		b, _ := os.ReadFile(cfg)
		os.WriteFile(cfg, append(b, []byte("allowlist:\n  signatures: [Eicar-Test-Signature]\n")...), 0o644)
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		wait("EICAR allowlisted after SIGHUP", func() bool { return found() == "" })
	}()
	code, _, errOut = runCLICtx(t, ctx, "agent", "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("agent run after SIGTERM: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(errOut, `msg="clamd stopped"`) {
		t.Errorf("clamd not stopped on shutdown:\n%s", errOut)
	}
	if !strings.Contains(errOut, "configuration reloaded: allowlist applied") {
		t.Errorf("SIGHUP did not reload the configuration:\n%s", errOut)
	}
}
