package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Validation messages start with the full key and ": ", so Load can put the
// key's file:line in front of them (withLines).

var (
	dbName   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	hhmm     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	sfpEntry = regexp.MustCompile(`^[0-9a-fA-F]{64}:[0-9]+$`)
	// nodeName is what `avfleet certs` accepts as a client name (the CN).
	nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	dnsName  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)
	cronPart = regexp.MustCompile(`^[0-9A-Za-z*,/-]+$`)
)

// MinMemoryBytes is the smallest non-zero limits.memory_bytes: less is
// certainly a unit mistake (512 meant as MiB), and clamd could not even start.
const MinMemoryBytes = 16 << 20

// MaxHistoryDays bounds report.history_days: a hundred years is "forever",
// and the bound keeps the retention a valid time.Duration.
const MaxHistoryDays = 36500

// checkListen validates a host:port listen address; "" is allowed when
// optional (the listener is off). Port 0 (any free port) is for tests.
func checkListen(key, addr string, optional bool) error {
	if addr == "" {
		if optional {
			return nil
		}
		return fmt.Errorf("%s: must be set", key)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port (like \":6501\" or \"127.0.0.1:6502\")", key, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s: %q: port %q is not a number from 0 to 65535", key, addr, port)
	}
	return nil
}

// checkURL validates an absolute URL with one of schemes and a host.
func checkURL(key, s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s: %q is not a URL: %v", key, s, errors.Unwrap(err))
	}
	ok := false
	for _, sc := range schemes {
		ok = ok || u.Scheme == sc
	}
	if !ok {
		return fmt.Errorf("%s: %q must start with %s://", key, s, strings.Join(schemes, ":// or "))
	}
	if u.Host == "" {
		return fmt.Errorf("%s: %q has no host", key, s)
	}
	return nil
}

// Validate reports every invalid setting, naming its key.
func (m *Mirror) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if m.DataDir == "" {
		add(errors.New("data_dir: must be set"))
	}
	if m.Listen == "" && m.PlainListen == "" {
		add(errors.New("listen: must be set (or plain_listen)"))
	}
	add(checkListen("listen", m.Listen, true))
	add(checkListen("plain_listen", m.PlainListen, true))
	add(checkListen("admin_listen", m.AdminListen, true))
	if m.Listen != "" && (m.Listen == m.PlainListen || m.Listen == m.AdminListen) ||
		m.PlainListen != "" && m.PlainListen == m.AdminListen {
		add(errors.New("listen: listen, plain_listen and admin_listen must be different addresses"))
	}
	if m.Listen != "" && (m.TLS.Cert == "" || m.TLS.Key == "") {
		add(errors.New("tls: cert and key must be set when listen is set"))
	}
	u := m.Upstream
	if u.ChecksPerDay < 1 || u.ChecksPerDay > 50 {
		add(fmt.Errorf("upstream.checks_per_day: %d is outside 1..50 (ClamAV's mirrors allow at most 50 checks a day)", u.ChecksPerDay))
	}
	if u.Enabled && len(u.URLs) == 0 {
		add(errors.New("upstream.urls: at least one URL is needed when upstream.enabled is true"))
	}
	for _, s := range u.URLs {
		add(checkURL("upstream.urls", s, "https", "http"))
	}
	if u.Enabled && len(u.Databases) == 0 {
		add(errors.New("upstream.databases: at least one database is needed when upstream.enabled is true"))
	}
	seen := map[string]bool{}
	for _, d := range u.Databases {
		if !dbName.MatchString(d) {
			add(fmt.Errorf("upstream.databases: %q is not a database name (like main, daily, bytecode)", d))
		} else if seen[d] {
			add(fmt.Errorf("upstream.databases: %q is listed twice", d))
		}
		seen[d] = true
	}
	if u.DNSTXT != "" && !dnsName.MatchString(u.DNSTXT) {
		add(fmt.Errorf("upstream.dns_txt: %q is not a DNS name", u.DNSTXT))
	}
	if u.Proxy != "" {
		add(checkURL("upstream.proxy", u.Proxy, "http", "https", "socks5"))
	}
	if u.Timeout <= 0 {
		add(fmt.Errorf("upstream.timeout: %s: must be positive", u.Timeout))
	}
	errs = append(errs, m.Trust.validate()...)
	if m.Retention.CDiffs < 0 {
		add(fmt.Errorf("retention.cdiffs: %d: must be >= 0", m.Retention.CDiffs))
	}
	if m.Retention.Versions < 1 {
		add(fmt.Errorf("retention.versions: %d: must be >= 1 (the served version counts)", m.Retention.Versions))
	}
	return errors.Join(errs...)
}

func (t *Trust) validate() []error {
	var errs []error
	for _, k := range t.CVDKeys {
		if k == "" {
			errs = append(errs, errors.New("trust.cvd_keys: an entry is empty"))
		}
	}
	if t.RequireSign && t.SignCertsDir == "" {
		errs = append(errs, errors.New("trust.require_sign: needs trust.sign_certs_dir"))
	}
	return errs
}

// Validate reports every invalid setting, naming its key.
func (a *Agent) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// node_name may be empty only before LoadAgent fills in the host name.
	if a.NodeName != "" && !nodeName.MatchString(a.NodeName) {
		add(fmt.Errorf("node_name: %q: use 1-64 letters, digits, '.', '_' or '-' (it is the client certificate's CN)", a.NodeName))
	}
	if a.StateDir == "" {
		add(errors.New("state_dir: must be set"))
	}
	if len(a.Mirror.URLs) == 0 {
		add(errors.New("mirror.urls: at least one URL is needed"))
	}
	for _, s := range a.Mirror.URLs {
		// https only: the mirror knows a node by its client certificate.
		add(checkURL("mirror.urls", s, "https"))
	}
	if a.Mirror.Cert == "" || a.Mirror.Key == "" {
		add(errors.New("mirror: cert and key must be set (the node's client certificate)"))
	}
	if a.Mirror.ChecksPerDay < 1 || a.Mirror.ChecksPerDay > 50 {
		add(fmt.Errorf("mirror.checks_per_day: %d is outside 1..50", a.Mirror.ChecksPerDay))
	}
	if a.Mirror.Timeout <= 0 {
		add(fmt.Errorf("mirror.timeout: %s: must be positive", a.Mirror.Timeout))
	}
	switch a.Clamd.Mode {
	case "managed":
		if a.Clamd.Binary == "" {
			add(errors.New("clamd.binary: must be set in managed mode"))
		}
	case "external":
		add(checkSocket(a.Clamd.Socket))
	default:
		add(fmt.Errorf("clamd.mode: %q is not managed or external", a.Clamd.Mode))
	}
	if a.Clamd.MaxThreads < 0 {
		add(fmt.Errorf("clamd.max_threads: %d: must be >= 0 (0 = CPUs allowed by limits)", a.Clamd.MaxThreads))
	}
	s := a.Scan.Schedule
	if s.Cron != "" {
		if s.Interval != "" && s.Interval != "daily" && s.Interval != "disabled" {
			// daily is the default: only an explicit other interval conflicts.
			add(errors.New("scan.schedule: set interval or cron, not both"))
		}
		f := strings.Fields(s.Cron)
		if len(f) != 5 {
			add(fmt.Errorf("scan.schedule.cron: %q must have 5 fields (minute hour day month weekday)", s.Cron))
		}
		for _, p := range f {
			if !cronPart.MatchString(p) {
				add(fmt.Errorf("scan.schedule.cron: %q: field %q is not a cron field", s.Cron, p))
				break
			}
		}
	} else {
		switch s.Interval {
		case "hourly", "daily", "disabled":
		default:
			add(fmt.Errorf("scan.schedule.interval: %q is not hourly, daily or disabled", s.Interval))
		}
		if s.Interval != "disabled" {
			if !hhmm.MatchString(s.Earliest) {
				add(fmt.Errorf("scan.schedule.earliest: %q is not HH:MM (00:00 to 23:59)", s.Earliest))
			}
			if !hhmm.MatchString(s.Latest) {
				add(fmt.Errorf("scan.schedule.latest: %q is not HH:MM (00:00 to 23:59)", s.Latest))
			}
		}
	}
	for _, p := range a.Scan.Paths {
		if !filepath.IsAbs(p) {
			add(fmt.Errorf("scan.paths: %q must be absolute", p))
		}
	}
	for _, e := range a.Scan.Exclude {
		if _, err := regexp.Compile(e); err != nil {
			add(fmt.Errorf("scan.exclude: %q is not a regular expression: %v", e, err))
		}
	}
	switch a.Scan.Action {
	case "notify", "copy", "move", "remove":
	default:
		add(fmt.Errorf("scan.action: %q is not notify, copy, move or remove", a.Scan.Action))
	}
	if (a.Scan.Action == "copy" || a.Scan.Action == "move") && a.Scan.QuarantineDir == "" {
		add(errors.New("scan.quarantine_dir: must be set for action copy or move"))
	}
	for _, sig := range a.Allowlist.Signatures {
		if sig == "" || strings.ContainsAny(sig, "\n\r\t") {
			add(fmt.Errorf("allowlist.signatures: %q is not a signature name", sig))
		}
	}
	for _, h := range a.Allowlist.SHA256 {
		if !sfpEntry.MatchString(h) {
			add(fmt.Errorf("allowlist.sha256: %q is not HASH:SIZE (64 hex digits, colon, size in bytes)", h))
		}
	}
	if a.Limits.CPUPercent < 0 || a.Limits.CPUPercent > 100*1024 {
		add(fmt.Errorf("limits.cpu_percent: %d is out of range (0 = unlimited, 100 = one core)", a.Limits.CPUPercent))
	}
	if a.Limits.MemoryBytes < 0 || a.Limits.MemoryBytes > 0 && a.Limits.MemoryBytes < MinMemoryBytes {
		add(fmt.Errorf("limits.memory_bytes: %d is out of range (0 = unlimited, else at least %d = 16 MiB; the value is in bytes)", a.Limits.MemoryBytes, MinMemoryBytes))
	}
	if r := a.Report.Syslog; r != "" {
		if err := checkURL("report.syslog", r, "udp", "tcp", "tls"); err != nil {
			add(err)
		} else if u, _ := url.Parse(r); u.Port() == "" || u.Path != "" {
			add(fmt.Errorf("report.syslog: %q must be udp://, tcp:// or tls://host:port with a port and no path", r))
		}
	}
	add(checkListen("report.metrics_listen", a.Report.MetricsListen, true))
	if a.Report.StaleAfter <= 0 {
		add(fmt.Errorf("report.stale_after: %s: must be positive", a.Report.StaleAfter))
	}
	if a.Report.HistoryDays < 1 || a.Report.HistoryDays > MaxHistoryDays {
		add(fmt.Errorf("report.history_days: %d is outside 1..%d (days of scan, detection and update history kept)", a.Report.HistoryDays, MaxHistoryDays))
	}
	errs = append(errs, a.Trust.validate()...)
	return errors.Join(errs...)
}

// checkSocket validates clamd.socket for external mode.
func checkSocket(s string) error {
	switch {
	case strings.HasPrefix(s, "unix://"):
		if p := strings.TrimPrefix(s, "unix://"); !filepath.IsAbs(p) {
			return fmt.Errorf("clamd.socket: %q: the socket path must be absolute (unix:///run/clamav/clamd.ctl)", s)
		}
		return nil
	case strings.HasPrefix(s, "tcp://"):
		if err := checkListen("clamd.socket", strings.TrimPrefix(s, "tcp://"), false); err != nil {
			return fmt.Errorf("clamd.socket: %q must be tcp://host:port", s)
		}
		return nil
	}
	return fmt.Errorf("clamd.socket: %q must be unix:///path or tcp://host:port in external mode", s)
}
