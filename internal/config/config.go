package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
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
		return fmt.Errorf("line %d: %q is not a duration (use 30s, 5m, 24h)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

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
		Report: Report{MetricsListen: "127.0.0.1:6503", StaleAfter: Duration(24 * time.Hour)},
	}
}

// Path is the file the configuration was loaded from ("" for defaults).
func (m *Mirror) Path() string { return m.path }

// Path is the file the configuration was loaded from ("" for defaults).
func (a *Agent) Path() string { return a.path }

// LoadMirror reads, decodes strictly and validates a mirror.yaml.
func LoadMirror(path string) (*Mirror, error) {
	c := DefaultMirror()
	if err := decodeFile(path, &c); err != nil {
		return nil, err
	}
	c.path = path
	c.resolve(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// LoadAgent reads, decodes strictly and validates an agent.yaml.
func LoadAgent(path string) (*Agent, error) {
	c := DefaultAgent()
	if err := decodeFile(path, &c); err != nil {
		return nil, err
	}
	c.path = path
	c.resolve(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// decodeFile decodes YAML over the defaults already in v; unknown keys are
// errors with the file name and line.
func decodeFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// abs makes p absolute relative to dir; "" stays "".
func abs(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
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

var dbName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Validate reports the first invalid setting, naming its key.
func (m *Mirror) Validate() error {
	var errs []error
	if m.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must be set"))
	}
	if m.Listen == "" && m.PlainListen == "" {
		errs = append(errs, errors.New("listen: must be set (or plain_listen)"))
	}
	if m.Listen != "" && (m.TLS.Cert == "" || m.TLS.Key == "") {
		errs = append(errs, errors.New("tls: cert and key must be set when listen is set"))
	}
	u := m.Upstream
	if u.ChecksPerDay < 1 || u.ChecksPerDay > 50 {
		errs = append(errs, fmt.Errorf("upstream.checks_per_day: %d is outside 1..50", u.ChecksPerDay))
	}
	if u.Enabled && len(u.URLs) == 0 {
		errs = append(errs, errors.New("upstream.urls: at least one URL is needed when upstream.enabled is true"))
	}
	for _, s := range u.URLs {
		if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
			errs = append(errs, fmt.Errorf("upstream.urls: %q must start with http:// or https://", s))
		}
	}
	for _, d := range u.Databases {
		if !dbName.MatchString(d) {
			errs = append(errs, fmt.Errorf("upstream.databases: %q is not a database name", d))
		}
	}
	if u.Timeout <= 0 {
		errs = append(errs, errors.New("upstream.timeout: must be positive"))
	}
	if m.Trust.RequireSign && m.Trust.SignCertsDir == "" {
		errs = append(errs, errors.New("trust.require_sign: needs trust.sign_certs_dir"))
	}
	if m.Retention.CDiffs < 0 || m.Retention.Versions < 1 {
		errs = append(errs, errors.New("retention: cdiffs must be >= 0 and versions >= 1"))
	}
	return errors.Join(errs...)
}

var hhmm = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)

// Validate reports every invalid setting, naming its key.
func (a *Agent) Validate() error {
	var errs []error
	if a.StateDir == "" {
		errs = append(errs, errors.New("state_dir: must be set"))
	}
	if len(a.Mirror.URLs) == 0 {
		errs = append(errs, errors.New("mirror.urls: at least one URL is needed"))
	}
	for _, s := range a.Mirror.URLs {
		if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") {
			errs = append(errs, fmt.Errorf("mirror.urls: %q must start with https://", s))
		}
	}
	if a.Mirror.ChecksPerDay < 1 || a.Mirror.ChecksPerDay > 50 {
		errs = append(errs, fmt.Errorf("mirror.checks_per_day: %d is outside 1..50", a.Mirror.ChecksPerDay))
	}
	if a.Mirror.Timeout <= 0 {
		errs = append(errs, errors.New("mirror.timeout: must be positive"))
	}
	switch a.Clamd.Mode {
	case "managed":
		if a.Clamd.Binary == "" {
			errs = append(errs, errors.New("clamd.binary: must be set in managed mode"))
		}
	case "external":
		if !strings.HasPrefix(a.Clamd.Socket, "unix://") && !strings.HasPrefix(a.Clamd.Socket, "tcp://") {
			errs = append(errs, fmt.Errorf("clamd.socket: %q must be unix:///path or tcp://host:port in external mode", a.Clamd.Socket))
		}
	default:
		errs = append(errs, fmt.Errorf("clamd.mode: %q is not managed or external", a.Clamd.Mode))
	}
	if a.Clamd.MaxThreads < 0 {
		errs = append(errs, errors.New("clamd.max_threads: must be >= 0"))
	}
	s := a.Scan.Schedule
	if s.Cron != "" {
		if s.Interval != "" && s.Interval != "daily" && s.Interval != "disabled" {
			// daily is the default: only an explicit other interval conflicts.
			errs = append(errs, errors.New("scan.schedule: set interval or cron, not both"))
		}
		if len(strings.Fields(s.Cron)) != 5 {
			errs = append(errs, fmt.Errorf("scan.schedule.cron: %q must have 5 fields (minute hour day month weekday)", s.Cron))
		}
	} else {
		switch s.Interval {
		case "hourly", "daily", "disabled":
		default:
			errs = append(errs, fmt.Errorf("scan.schedule.interval: %q is not hourly, daily or disabled", s.Interval))
		}
		if s.Interval != "disabled" {
			if !hhmm.MatchString(s.Earliest) {
				errs = append(errs, fmt.Errorf("scan.schedule.earliest: %q is not HH:MM", s.Earliest))
			}
			if !hhmm.MatchString(s.Latest) {
				errs = append(errs, fmt.Errorf("scan.schedule.latest: %q is not HH:MM", s.Latest))
			}
		}
	}
	for _, p := range a.Scan.Paths {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("scan.paths: %q must be absolute", p))
		}
	}
	for _, e := range a.Scan.Exclude {
		if _, err := regexp.Compile(e); err != nil {
			errs = append(errs, fmt.Errorf("scan.exclude: %q: %v", e, err))
		}
	}
	switch a.Scan.Action {
	case "notify", "copy", "move", "remove":
	default:
		errs = append(errs, fmt.Errorf("scan.action: %q is not notify, copy, move or remove", a.Scan.Action))
	}
	if (a.Scan.Action == "copy" || a.Scan.Action == "move") && a.Scan.QuarantineDir == "" {
		errs = append(errs, errors.New("scan.quarantine_dir: must be set for action copy or move"))
	}
	for _, sig := range a.Allowlist.Signatures {
		if sig == "" || strings.ContainsAny(sig, "\n\r") {
			errs = append(errs, fmt.Errorf("allowlist.signatures: %q is not a signature name", sig))
		}
	}
	sha := regexp.MustCompile(`^[0-9a-fA-F]{64}:[0-9]+$`)
	for _, h := range a.Allowlist.SHA256 {
		if !sha.MatchString(h) {
			errs = append(errs, fmt.Errorf("allowlist.sha256: %q is not HASH:SIZE (64 hex digits, colon, size in bytes)", h))
		}
	}
	if a.Limits.CPUPercent < 0 || a.Limits.CPUPercent > 100*1024 {
		errs = append(errs, fmt.Errorf("limits.cpu_percent: %d is out of range (0 = unlimited, 100 = one core)", a.Limits.CPUPercent))
	}
	if a.Limits.MemoryBytes < 0 {
		errs = append(errs, errors.New("limits.memory_bytes: must be >= 0"))
	}
	if a.Report.StaleAfter <= 0 {
		errs = append(errs, errors.New("report.stale_after: must be positive"))
	}
	if r := a.Report.Syslog; r != "" && !strings.HasPrefix(r, "udp://") && !strings.HasPrefix(r, "tcp://") && !strings.HasPrefix(r, "tls://") {
		errs = append(errs, fmt.Errorf("report.syslog: %q must be udp://, tcp:// or tls://host:port", r))
	}
	return errors.Join(errs...)
}
