package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/config"
)

// fakeSink holds fixed versions and takes no files: these unit tests stop
// before anything would be downloaded.
type fakeSink struct{ held map[string]uint }

func (f fakeSink) PutIncoming(string, io.Reader) error { return fmt.Errorf("unexpected PutIncoming") }
func (f fakeSink) RemoveIncoming(string) error         { return nil }
func (f fakeSink) Ingest(context.Context, string, string) (Ingested, error) {
	return Ingested{}, fmt.Errorf("unexpected Ingest")
}
func (f fakeSink) Held(db string) (Held, error) {
	return Held{Version: f.held[db], BuildTime: time.Unix(1_700_000_000, 0)}, nil
}

type memState struct {
	results map[string]SyncResult
}

func (m *memState) SetSyncResult(r SyncResult) error { m.results[r.Database] = r; return nil }
func (m *memState) Cooldown(string, time.Time) (Cooldown, bool, error) {
	return Cooldown{}, false, nil
}
func (m *memState) SetCooldown(Cooldown) error { return nil }

type mapResolver map[string]string

func (m mapResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[name]; ok {
		return []string{v}, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", name)
}

// The databases of the main TXT record (main, daily, bytecode) take their
// version from it: current means no HTTP request; a 0 field (a mirror's
// dns.txt for a database it lacks) or an unusable record means the header
// check asks upstream.
func TestMainRecordDecides(t *testing.T) {
	now := time.Now().Unix()
	cases := []struct {
		name   string
		record string
		http   bool // a request to upstream is expected
	}{
		{"current by DNS", fmt.Sprintf("1.4.3:62:27480:%d:0:90:0:339", now), false},
		{"daily 0 in the record", fmt.Sprintf("0.0.0:62:0:%d:0:90:0:339", now), true},
		{"stale record", fmt.Sprintf("1.4.3:62:27480:%d:0:90:0:339", now-13*3600), true},
		{"garbage record", "v=spf1 -all", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.WriteHeader(http.StatusNotModified)
			}))
			defer srv.Close()
			st := &memState{results: map[string]SyncResult{}}
			s, err := New(Options{
				Config: config.Upstream{Enabled: true, URLs: []string{srv.URL}, Databases: []string{"daily", "main"}, ChecksPerDay: 12,
					DNSTXT: "current.cvd.clamav.net", Timeout: config.Duration(5 * time.Second)},
				Sink: fakeSink{held: map[string]uint{"daily": 27480, "main": 62}}, State: st,
				Resolver: mapResolver{"current.cvd.clamav.net": tc.record},
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.SyncOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := hits.Load() > 0; got != tc.http {
				t.Errorf("%d HTTP requests; want requests: %v", hits.Load(), tc.http)
			}
			for _, db := range []string{"daily", "main"} {
				if r := st.results[db]; r.Result != ResultCurrent {
					t.Errorf("%s: %+v, want current", db, r)
				}
			}
		})
	}
}
