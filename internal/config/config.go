package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "30s", "24h" in YAML.
type Duration time.Duration

func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use 30s, 5m, 24h)", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String is the duration as an operator writes it: "24h", not "24h0m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// TLS names a certificate, its key and the CA that client certificates must chain to.
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"` // empty = server-auth only (legacy clients)
}

// Upstream is the mirror's online mode: where and how often to fetch from ClamAV.
type Upstream struct {
	Enabled      bool     `yaml:"enabled"`
	URLs         []string `yaml:"urls"`
	Databases    []string `yaml:"databases"`
	ChecksPerDay int      `yaml:"checks_per_day"`
	DNSTXT       string   `yaml:"dns_txt"`
	Proxy        string   `yaml:"proxy"`
	Timeout      Duration `yaml:"timeout"`
}

// Trust is what the verifier believes beyond ClamAV's built-in keys.
type Trust struct {
	CVDKeys      []string `yaml:"cvd_keys"`       // PEM RSA public keys of organisation databases
	SignCertsDir string   `yaml:"sign_certs_dir"` // CA certs for ClamAV 1.5 .sign files
	RequireSign  bool     `yaml:"require_sign"`
	// AllowUnsigned accepts unsigned CUD databases (an organisation's own,
	// built with `avfleet cvd build --unsigned`). Off by default: an unsigned
	// file proves nothing about where it came from.
	AllowUnsigned bool `yaml:"allow_unsigned"`
}

// Retention is how much history the mirror keeps.
type Retention struct {
	CDiffs   int `yaml:"cdiffs"`
	Versions int `yaml:"versions"`
}

// Mirror is mirror.yaml.
type Mirror struct {
	DataDir     string    `yaml:"data_dir"`
	Listen      string    `yaml:"listen"`
	TLS         TLS       `yaml:"tls"`
	PlainListen string    `yaml:"plain_listen"`
	AdminListen string    `yaml:"admin_listen"`
	Upstream    Upstream  `yaml:"upstream"`
	Trust       Trust     `yaml:"trust"`
	Retention   Retention `yaml:"retention"`

	path string // the file it was loaded from, for messages
}

// DefaultMirror returns mirror.yaml's defaults (DESIGN.md section 3).
func DefaultMirror() Mirror {
	return Mirror{
		DataDir:     "/var/lib/avfleet/mirror",
		Listen:      ":6501",
		TLS:         TLS{Cert: "server.crt", Key: "server.key", ClientCA: "ca.crt"},
		AdminListen: "127.0.0.1:6502",
		Upstream: Upstream{
			URLs:         []string{"https://database.clamav.net"},
			Databases:    []string{"main", "daily", "bytecode"},
			ChecksPerDay: 12,
			DNSTXT:       "current.cvd.clamav.net",
			Timeout:      Duration(30 * time.Second),
		},
		Retention: Retention{CDiffs: 30, Versions: 5},
	}
}

// MirrorEndpoint is how an agent reaches the mirror.
type MirrorEndpoint struct {
	URLs         []string `yaml:"urls"`
	CA           string   `yaml:"ca"`
	Cert         string   `yaml:"cert"`
	Key          string   `yaml:"key"`
	ChecksPerDay int      `yaml:"checks_per_day"`
	Timeout      Duration `yaml:"timeout"`
}

// Clamd is how the agent gets a clamd.
type Clamd struct {
	Mode       string `yaml:"mode"` // managed | external
	Binary     string `yaml:"binary"`
	Socket     string `yaml:"socket"`
	MaxThreads int    `yaml:"max_threads"`
}

// Schedule is when scheduled scans run: an interval inside a start window, or cron.
type Schedule struct {
	Interval string `yaml:"interval"` // hourly | daily | disabled
	Earliest string `yaml:"earliest"` // "HH:MM" local time
	Latest   string `yaml:"latest"`
	Cron     string `yaml:"cron"`
}

// Scan is what scheduled scans cover and what they do with detections.
type Scan struct {
	Schedule      Schedule `yaml:"schedule"`
	Paths         []string `yaml:"paths"`
	Exclude       []string `yaml:"exclude"`
	OneFilesystem bool     `yaml:"one_filesystem"`
	Containers    bool     `yaml:"containers"`
	Incremental   bool     `yaml:"incremental"`
	Action        string   `yaml:"action"` // notify | copy | move | remove
	QuarantineDir string   `yaml:"quarantine_dir"`
}

// Allowlist is what clamd must never report.
type Allowlist struct {
	Signatures []string `yaml:"signatures"`
	SHA256     []string `yaml:"sha256"` // "HASH:SIZE"
}

// Limits bound clamd and scan work.
type Limits struct {
	CPUPercent  int   `yaml:"cpu_percent"`
	MemoryBytes int64 `yaml:"memory_bytes"`
}

// Report is where results go besides the JSON log.
type Report struct {
	Syslog        string   `yaml:"syslog"`
	MetricsListen string   `yaml:"metrics_listen"`
	StaleAfter    Duration `yaml:"stale_after"`
	// HistoryDays is how long the SQLite history keeps scans, detections and
	// updates; older rows are pruned once a day.
	HistoryDays int `yaml:"history_days"`
}

// Agent is agent.yaml.
type Agent struct {
	NodeName  string         `yaml:"node_name"`
	StateDir  string         `yaml:"state_dir"`
	Mirror    MirrorEndpoint `yaml:"mirror"`
	Clamd     Clamd          `yaml:"clamd"`
	Scan      Scan           `yaml:"scan"`
	Allowlist Allowlist      `yaml:"allowlist"`
	Limits    Limits         `yaml:"limits"`
	Report    Report         `yaml:"report"`
	Trust     Trust          `yaml:"trust"` // same meaning as the mirror's: an agent re-verifies everything

	path string
}

// DefaultAgent returns agent.yaml's defaults (DESIGN.md section 3).
func DefaultAgent() Agent {
	return Agent{
		StateDir: "/var/lib/avfleet/agent",
		Mirror: MirrorEndpoint{
			URLs:         []string{"https://mirror.internal:6501"},
			CA:           "ca.crt",
			Cert:         "node.crt",
			Key:          "node.key",
			ChecksPerDay: 12,
			Timeout:      Duration(30 * time.Second),
		},
		Clamd: Clamd{Mode: "managed", Binary: "clamd"},
		Scan: Scan{
			Schedule:      Schedule{Interval: "daily", Earliest: "01:00", Latest: "05:00"},
			Paths:         []string{"/"},
			Exclude:       []string{"^/proc/", "^/sys/", "^/dev/", "^/run/"},
			Containers:    true,
			Incremental:   true,
			Action:        "notify",
			QuarantineDir: "/var/lib/avfleet/quarantine",
		},
		// 400 days: PCI DSS 10.5.1 asks for 12 months of audit history, plus
		// a margin for the auditor's visit after the year ends.
		Report: Report{MetricsListen: "127.0.0.1:6503", StaleAfter: Duration(24 * time.Hour), HistoryDays: 400},
	}
}

// Path is the file the configuration was loaded from ("" for defaults).
func (m *Mirror) Path() string { return m.path }

// Path is the file the configuration was loaded from ("" for defaults).
func (a *Agent) Path() string { return a.path }

// LoadMirror reads, decodes strictly and validates a mirror.yaml.
func LoadMirror(path string) (*Mirror, error) {
	c := DefaultMirror()
	ln, err := decodeFile(path, &c)
	if err != nil {
		return nil, err
	}
	c.path = path
	c.resolve(filepath.Dir(path))
	if err := withLines(path, ln, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadAgent reads, decodes strictly and validates an agent.yaml. An empty
// node_name becomes the host name, so --check-config shows the CN the
// agent's client certificate must carry.
func LoadAgent(path string) (*Agent, error) {
	c := DefaultAgent()
	ln, err := decodeFile(path, &c)
	if err != nil {
		return nil, err
	}
	c.path = path
	c.resolve(filepath.Dir(path))
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("%s: node_name is empty and the host name is unknown: %w", path, err)
		}
		c.NodeName = h
	}
	if err := withLines(path, ln, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

// abs makes p absolute relative to dir; "" stays "".
func abs(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if a, err := filepath.Abs(filepath.Join(dir, p)); err == nil {
		return a
	}
	return filepath.Join(dir, p)
}

func (m *Mirror) resolve(dir string) {
	m.DataDir = abs(dir, m.DataDir)
	m.TLS.Cert, m.TLS.Key, m.TLS.ClientCA = abs(dir, m.TLS.Cert), abs(dir, m.TLS.Key), abs(dir, m.TLS.ClientCA)
	m.Trust.resolve(dir)
}

func (a *Agent) resolve(dir string) {
	a.StateDir = abs(dir, a.StateDir)
	a.Mirror.CA, a.Mirror.Cert, a.Mirror.Key = abs(dir, a.Mirror.CA), abs(dir, a.Mirror.Cert), abs(dir, a.Mirror.Key)
	a.Scan.QuarantineDir = abs(dir, a.Scan.QuarantineDir)
	a.Trust.resolve(dir)
}

func (t *Trust) resolve(dir string) {
	for i, k := range t.CVDKeys {
		t.CVDKeys[i] = abs(dir, k)
	}
	t.SignCertsDir = abs(dir, t.SignCertsDir)
}
