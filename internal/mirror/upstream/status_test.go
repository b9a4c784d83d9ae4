package upstream_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/avfleet/avfleet/internal/mirror/upstream"
)

// A new online mirror whose first download fails has verified nothing, yet
// `mirror status` must list the database with the failed sync and why.
func TestStatusShowsAFirstSyncThatFailed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request) bool
		want  string
	}{
		{"cvd is a CDN error page", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html><body>origin unreachable</body></html>"))
			return true
		}, "not a CVD"},
		{"upstream answers 500", func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return true
		}, "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t, false, stdFiles(t))
			up.setOverride(tc.serve)
			st := newStore(t, t.TempDir())
			r := syncOnce(t, newSyncer(t, st, up, syncerOpts{}))
			if r.Result != upstream.ResultFailed {
				t.Fatalf("sync result %q, want failed", r.Result)
			}
			s, err := st.Status()
			if err != nil {
				t.Fatal(err)
			}
			if s.PublishedAt != nil || len(s.Databases) != 1 {
				t.Fatalf("status: published %v, databases %+v; want nothing published and test listed", s.PublishedAt, s.Databases)
			}
			d := s.Databases[0]
			if d.Name != "test" || d.Version != 0 || d.LatestVersion != 0 || d.LastSync == nil ||
				d.LastSync.Result != upstream.ResultFailed || !strings.Contains(d.LastSync.Error, tc.want) {
				t.Errorf("status of test: %+v, last sync %+v; want version 0 and a failed sync naming %q", d, d.LastSync, tc.want)
			}
		})
	}
}
