package mirror

import (
	"encoding/json"
	"slices"
	"sort"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/api"
)

// Status is `avfleet mirror status --json`.
type Status struct {
	DataDir     string       `json:"data_dir"`
	Generation  uint64       `json:"generation"`
	PublishedAt *time.Time   `json:"published_at"`
	ETag        string       `json:"etag"`
	Databases   []DBStatus   `json:"databases"`
	Pending     []string     `json:"pending"` // waiting in incoming/
	Rejections  []Rejection  `json:"recent_rejections"`
	Rejected    RejectCounts `json:"rejected_total"`
	Nodes       NodeCounts   `json:"nodes"`
	Cooldowns   []Cooldown   `json:"cooldowns"`
}

// RejectCounts are the totals of rejections by check since state.db was created.
type RejectCounts map[string]int64

// DBStatus is one database in Status.
type DBStatus struct {
	Name          string          `json:"name"`
	Version       uint            `json:"version"` // served
	BuildTime     time.Time       `json:"build_time"`
	AgeSeconds    int64           `json:"age_seconds"`
	Sigs          uint            `json:"sigs"`
	FLevel        uint            `json:"flevel"`
	Kind          string          `json:"kind"`
	FullVersion   uint            `json:"full_version"`
	CDiffs        *api.CDiffRange `json:"cdiffs"`
	LatestVersion uint            `json:"latest_version"` // newest verified, served or not
	Held          bool            `json:"held"`
	RolledBack    bool            `json:"rolled_back"`
	PinnedSince   *time.Time      `json:"pinned_since,omitempty"`
	History       []uint          `json:"history"` // versions that can be rolled back to
	LastSync      *SyncResult     `json:"last_sync"`
	Cooldown      *Cooldown       `json:"cooldown"`
	Rejections    []Rejection     `json:"recent_rejections"`
}

// NodeCounts summarise node reports.
type NodeCounts struct {
	Total     int `json:"total"`     // nodes that ever reported
	Reporting int `json:"reporting"` // reported within the last 24 h
	Current   int `json:"current"`   // reporting, and run every served database at the served version
}

// reportingWindow is how recent a report must be to count as reporting.
const reportingWindow = 24 * time.Hour

// nodeReportDBs is the part of a stored report the counts need.
type nodeReportDBs struct {
	Databases map[string]uint `json:"databases"`
}

// countNodes decides which nodes are reporting and current against m.
func countNodes(recs []NodeRecord, m api.Manifest, now time.Time) NodeCounts {
	c := NodeCounts{Total: len(recs)}
	for _, r := range recs {
		if now.Sub(r.ReceivedAt) > reportingWindow {
			continue
		}
		c.Reporting++
		var rep nodeReportDBs
		if json.Unmarshal(r.Report, &rep) != nil {
			continue
		}
		if nodeCurrent(rep.Databases, m) {
			c.Current++
		}
	}
	return c
}

func nodeCurrent(dbs map[string]uint, m api.Manifest) bool {
	if len(m.Databases) == 0 {
		return false
	}
	for _, d := range m.Databases {
		if v, ok := dbs[d.Name]; !ok || v != d.Version {
			return false
		}
	}
	return true
}

// Status gathers what `avfleet mirror status` shows. It takes no lock.
func (s *Store) Status() (Status, error) {
	now := s.opt.Now()
	st := Status{DataDir: s.opt.DataDir, Databases: []DBStatus{}}
	set, err := s.current()
	if err != nil {
		return st, err
	}
	st.Generation, st.ETag = set.index.Generation, set.manifest.ETag
	if !set.index.PublishedAt.IsZero() {
		t := set.index.PublishedAt
		st.PublishedAt = &t
	}
	cat, err := loadCatalog(s.history, false)
	if err != nil {
		return st, err
	}
	pins, err := s.state.Pins()
	if err != nil {
		return st, err
	}
	syncs, err := s.state.SyncResults()
	if err != nil {
		return st, err
	}
	cds, err := s.state.Cooldowns(now)
	if err != nil {
		return st, err
	}
	st.Cooldowns = cds
	served := map[string]api.Database{}
	for _, d := range set.manifest.Databases {
		served[d.Name] = d
	}
	// Every database the mirror knows of: verified, served, or only tried
	// by upstream sync (a new online mirror whose first download fails
	// must show why).
	names := cat.names()
	for n := range served {
		if cat[n] == nil {
			names = append(names, n)
		}
	}
	for n := range syncs {
		if cat[n] == nil && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		d := DBStatus{Name: n, History: []uint{}}
		if m, ok := served[n]; ok {
			d.Version, d.BuildTime, d.Sigs, d.FLevel, d.Kind = m.Version, m.BuildTime, m.Sigs, m.FLevel, m.Kind
			d.FullVersion, d.CDiffs, d.Held, d.RolledBack = m.FullVersion, m.CDiffs, m.Held, m.RolledBack
			if !m.BuildTime.IsZero() {
				d.AgeSeconds = int64(now.Sub(m.BuildTime) / time.Second)
			}
		}
		if h := cat[n]; h != nil {
			d.LatestVersion = h.newest()
			for _, v := range h.sortedVersions() {
				if h.versions[v].database() != nil {
					d.History = append(d.History, v)
				}
			}
		}
		if p, ok := pins[n]; ok {
			t := p.Since
			d.PinnedSince = &t
		}
		if r, ok := syncs[n]; ok {
			r := r
			d.LastSync = &r
		}
		for _, c := range cds {
			if c.Scope == n {
				c := c
				d.Cooldown = &c
			}
		}
		if d.Rejections, err = s.state.Rejections(n, 5); err != nil {
			return st, err
		}
		if d.Rejections == nil {
			d.Rejections = []Rejection{}
		}
		st.Databases = append(st.Databases, d)
	}
	if st.Rejections, err = s.state.Rejections("", 10); err != nil {
		return st, err
	}
	if st.Rejections == nil {
		st.Rejections = []Rejection{}
	}
	if st.Rejected, err = s.state.Counters("rejections"); err != nil {
		return st, err
	}
	recs, err := s.state.NodeReports()
	if err != nil {
		return st, err
	}
	st.Nodes = countNodes(recs, set.manifest, now)
	if st.Pending, err = s.Pending(); err != nil {
		return st, err
	}
	if st.Pending == nil {
		st.Pending = []string{}
	}
	return st, nil
}
