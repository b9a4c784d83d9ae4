package scan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/report"
)

// TestPipeUnreachableClamd: over a unix socket the walker's own connection
// (the pipelined path) retries an absent clamd for clamdWait, then fails the
// scan instead of counting every file as an error.
func TestPipeUnreachableClamd(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := clamd.NewClient("unix://" + filepath.Join(t.TempDir(), "absent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	eng := ClamdEngine(cl)
	if pe, ok := eng.(pipelineEngine); !ok || !pe.pipelined() {
		t.Fatal("clamd over a unix socket does not take the pipelined path")
	}
	s, err := New(Config{Engine: eng, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	s.clamdWait = 100 * time.Millisecond
	start := time.Now()
	sum, err := s.Run(t.Context(), Options{Paths: []string{dir}})
	if err == nil || !strings.Contains(err.Error(), "cannot reach clamd") {
		t.Fatalf("scan with no clamd: err %v, want cannot reach clamd", err)
	}
	if sum.Result != report.ResultError || sum.Files != 0 || sum.Errors != 0 {
		t.Errorf("summary %+v: want result error, no files, no per-file errors", sum)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to give up", d)
	}
}
