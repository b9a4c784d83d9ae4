package mirrorsink_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/mirror"
	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/mirror/upstream"
	"github.com/avfleet/avfleet/internal/mirror/upstream/mirrorsink"
	"github.com/avfleet/avfleet/internal/testutil"
)

// The mirror daemon runs upstream sync as one of its parts (Daemon.Go, as
// `avfleet mirror serve` wires it): starting from test-1, what the daemon
// serves becomes version 6 from upstream's cdiffs, and the sync stops with
// the daemon.
func TestDaemonRunsUpstreamSync(t *testing.T) {
	td := testutil.ClamAVTestdata(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if name == "test.cvd" {
			name = "test-6.cvd"
		}
		if strings.Contains(name, "/") || !strings.HasPrefix(name, "test-") {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(td, name))
	}))
	defer up.Close()

	dir := t.TempDir()
	cfg := config.DefaultMirror()
	cfg.DataDir, cfg.Listen, cfg.AdminListen, cfg.PlainListen = dir, "", "", "127.0.0.1:0"
	cfg.Upstream = config.Upstream{Enabled: true, URLs: []string{up.URL}, Databases: []string{"test"}, ChecksPerDay: 12,
		Timeout: config.Duration(5 * time.Second)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := mirror.NewVerifier(cfg.Trust)
	if err != nil {
		t.Fatal(err)
	}
	st, err := mirror.Open(mirror.Options{DataDir: dir, Retention: cfg.Retention, Verifier: v, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := st.Import(context.Background(), []string{filepath.Join(td, "test-1.cvd")}); err != nil || res[0].Outcome != mirror.Accepted {
		t.Fatalf("import test-1: %+v %v", res, err)
	}
	st.Close()

	reg := prometheus.NewRegistry()
	d, err := mirror.NewDaemon(mirror.DaemonOptions{Config: &cfg, Logger: log, Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	sink, state := mirrorsink.New(d.Store())
	s, err := upstream.New(upstream.Options{Config: cfg.Upstream, Sink: sink, State: state, Logger: log, Registerer: reg,
		Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.Go(s.Run)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("daemon did not stop")
		}
	}()

	url := "http://" + d.Addr("plain") + api.ManifestPath
	deadline := time.Now().Add(20 * time.Second)
	var last api.Manifest
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&last)
			resp.Body.Close()
			if len(last.Databases) == 1 && last.Databases[0].Version == 6 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the daemon never served version 6; last manifest %+v", last.Databases)
}
