package report

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Severity is an RFC 5424 severity (section 6.2.1).
type Severity int

const (
	SeverityEmergency Severity = iota
	SeverityAlert
	SeverityCritical
	SeverityError
	SeverityWarning
	SeverityNotice
	SeverityInfo
	SeverityDebug
)

// slogLevel keeps the JSON log line's level in step with the syslog severity.
func (s Severity) slogLevel() slog.Level {
	switch {
	case s <= SeverityError:
		return slog.LevelError
	case s == SeverityWarning:
		return slog.LevelWarn
	case s == SeverityDebug:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// Facility is an RFC 5424 facility (section 6.2.1).
type Facility int

// FacilityDaemon is the default: avfleet is a system daemon, and Debian's and
// RHEL's stock rsyslog rules route daemon.* without extra configuration,
// while the local0..7 facilities mean something different at every site.
const FacilityDaemon Facility = 3

var facilityNames = []string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// ParseFacility accepts a facility name as rsyslog writes it (daemon, auth,
// local0 ... local7; "security" for audit) or its number 0..23.
func ParseFacility(s string) (Facility, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	if name == "security" {
		name = "audit"
	}
	for i, n := range facilityNames {
		if n == name {
			return Facility(i), nil
		}
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n < len(facilityNames) {
		return Facility(n), nil
	}
	return 0, fmt.Errorf("syslog facility %q is not one of %s or 0..23", s, strings.Join(facilityNames, ", "))
}

func (f Facility) String() string {
	if f >= 0 && int(f) < len(facilityNames) {
		return facilityNames[f]
	}
	return strconv.Itoa(int(f))
}

// SDID is the SD-ID of avfleet's structured data element; see the package
// documentation for why it uses the documentation PEN 32473.
const SDID = "avfleet@32473"

// AppName is the syslog APP-NAME of every message.
const AppName = "avfleet"

// minMessageSize is what RFC 5424 section 6.1 requires every receiver to accept.
const minMessageSize = 480

// formatter renders events as RFC 5424 messages (without transport framing).
type formatter struct {
	facility Facility
	hostname string // when the event names no node
	procID   string
	maxSize  int
}

// format renders ev with sequence number seq. A message longer than maxSize is
// shortened so that it stays well-formed: first the MSG text is cut, then the
// parameter values, and only as a last resort the avfleet element is left out
// (the meta element with the sequence number always stays).
func (f *formatter) format(ev Event, seq uint32) []byte {
	ts := ev.eventTime()
	if ts.IsZero() {
		ts = time.Now()
	}
	host := ev.eventNode()
	if host == "" {
		host = f.hostname
	}
	pri := int(f.facility)*8 + int(ev.severity())
	header := fmt.Sprintf("<%d>1 %s %s %s %s %s ", pri,
		ts.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		headerField(host, 255), AppName, headerField(f.procID, 128), headerField(strings.ToUpper(string(ev.Kind())), 32))
	meta := `[meta sequenceId="` + strconv.FormatUint(uint64(seq), 10) + `"]`
	text := ev.text()
	fields := ev.fields()

	for _, limit := range []int{0, 1024, 256, 64, 16} {
		sd := header + structuredData(fields, limit) + meta
		if len(sd) > f.maxSize {
			continue
		}
		return appendMsg([]byte(sd), text, f.maxSize)
	}
	return appendMsg([]byte(header+meta), text, f.maxSize)
}

// appendMsg adds " MSG", cut at a rune boundary so the whole stays within max.
func appendMsg(b []byte, text string, max int) []byte {
	room := max - len(b) - 1
	if room <= 0 || text == "" {
		return b
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	if len(text) > room {
		text = truncateUTF8(text, room)
	}
	return append(append(b, ' '), text...)
}

// headerField makes s a valid header field: 1..max printable US-ASCII
// characters, or NILVALUE when empty.
func headerField(s string, max int) string {
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if r < 33 || r > 126 {
			return '_'
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
	}
	return s
}

// structuredData renders the avfleet SD-ELEMENT. limit > 0 caps each value at
// that many bytes (marked with a trailing "..." inside the limit).
func structuredData(fields []field, limit int) string {
	var b strings.Builder
	b.WriteString("[" + SDID)
	for _, f := range fields {
		if f.v.Kind() == slog.KindAny {
			if list, ok := f.v.Any().([]string); ok {
				// RFC 5424 lets a parameter repeat; one per value keeps paths
				// containing commas unambiguous.
				for _, s := range list {
					writeParam(&b, f.name, s, limit)
				}
				continue
			}
		}
		writeParam(&b, f.name, sdValue(f.v), limit)
	}
	b.WriteString("]")
	return b.String()
}

func writeParam(b *strings.Builder, name, value string, limit int) {
	if limit > 0 && len(value) > limit {
		value = truncateUTF8(value, limit-3) + "..."
	}
	b.WriteString(" " + name + `="`)
	b.WriteString(escapeParamValue(value))
	b.WriteString(`"`)
}

// escapeParamValue applies RFC 5424 section 6.3.3: '"', '\' and ']' are
// escaped with a backslash. PARAM-VALUE must be UTF-8, so invalid bytes (a
// Linux file name can hold any) become U+FFFD, as encoding/json does.
func escapeParamValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, `"\]`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sdValue renders a field value as text: times in RFC 3339 UTC, durations as
// seconds, version and count maps as "name:value,name:value".
func sdValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindInt64:
		return strconv.FormatInt(v.Int64(), 10)
	case slog.KindUint64:
		return strconv.FormatUint(v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.FormatFloat(v.Float64(), 'f', -1, 64)
	case slog.KindBool:
		return strconv.FormatBool(v.Bool())
	case slog.KindTime:
		if v.Time().IsZero() {
			return ""
		}
		return v.Time().UTC().Format(time.RFC3339Nano)
	case slog.KindGroup:
		parts := make([]string, 0, len(v.Group()))
		for _, a := range v.Group() {
			parts = append(parts, a.Key+":"+sdValue(a.Value))
		}
		return strings.Join(parts, ",")
	}
	return v.String()
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
