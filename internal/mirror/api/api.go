// Package api holds the JSON documents of the mirror's HTTP API
// (docs/api.md): the manifest, and the report a node sends. Agents import it
// to speak to the mirror without pulling in the mirror's store; it depends on
// nothing but the standard library.
package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Paths of the API.
const (
	ManifestPath = "/api/v1/manifest"
	WatchPath    = "/api/v1/watch"           // ?version=ETAG
	ReportPath   = "/api/v1/nodes/%s/report" // fmt with the node name
)

// MaxReportBytes is the largest report body the mirror accepts.
const MaxReportBytes = 1 << 20

// Manifest is GET /api/v1/manifest.
type Manifest struct {
	ETag        string     `json:"etag"`
	Generation  uint64     `json:"generation"`
	PublishedAt time.Time  `json:"published_at"`
	Databases   []Database `json:"databases"`
}

// Database is one database as the mirror serves it.
type Database struct {
	Name            string      `json:"name"`
	Version         uint        `json:"version"`
	BuildTime       time.Time   `json:"build_time"`
	BuildTimeHeader string      `json:"build_time_header"`
	Sigs            uint        `json:"sigs"`
	FLevel          uint        `json:"flevel"`
	Kind            string      `json:"kind"` // cvd | cld | cud
	Path            string      `json:"path"`
	Size            int64       `json:"size"`
	SHA256          string      `json:"sha256"`
	SignPath        string      `json:"sign_path"`
	SignedBy        string      `json:"signed_by"`
	FullVersion     uint        `json:"full_version"`
	FullPath        string      `json:"full_path"`
	FullSize        int64       `json:"full_size"`
	FullSHA256      string      `json:"full_sha256"`
	FullSignPath    string      `json:"full_sign_path"`
	CDiffs          *CDiffRange `json:"cdiffs"`
	CDiffFiles      []CDiffFile `json:"cdiff_files"`
	Held            bool        `json:"held"`
	RolledBack      bool        `json:"rolled_back"`
}

// CDiffRange says /{db}-{n}.cdiff exists for every n in From..To.
type CDiffRange struct {
	From uint `json:"from"`
	To   uint `json:"to"`
}

// CDiffFile is one served cdiff.
type CDiffFile struct {
	Version  uint   `json:"version"`
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	SignPath string `json:"sign_path"`
}

// ETagOf identifies a list of databases: it changes exactly when something
// a client could fetch or act on changes, not when an identical set is
// republished.
func ETagOf(dbs []Database) string {
	if dbs == nil {
		dbs = []Database{}
	}
	b, _ := json.Marshal(dbs)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Report is the body of POST /api/v1/nodes/{node}/report.
type Report struct {
	Node         string          `json:"node"`
	AgentVersion string          `json:"agent_version"`
	Databases    map[string]uint `json:"databases"`
	ClamdVersion string          `json:"clamd_version"`
	LastUpdate   *time.Time      `json:"last_update"`
	LastError    string          `json:"last_error"`
	LastScan     *ScanSummary    `json:"last_scan"`
	Detections   []Detection     `json:"detections"`
}

// ScanSummary is the last finished scan of a node.
type ScanSummary struct {
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Files      int64      `json:"files"`
	Bytes      int64      `json:"bytes"`
	Infected   int64      `json:"infected"`
	Errors     int64      `json:"errors"`
	Status     string     `json:"status"` // ok | failed
}

// Detection is one detection a node reports.
type Detection struct {
	Time      *time.Time `json:"time"`
	Path      string     `json:"path"`
	Container string     `json:"container"`
	Signature string     `json:"signature"`
	Action    string     `json:"action"`
}

// Error is the body of every API error response.
type Error struct {
	Error string `json:"error"`
}
