package report

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// A strict RFC 5424 parser, used to check what the formatter and the syslog
// client produce (and what rsyslog received). Stricter than the RFC in one
// place: a backslash in PARAM-VALUE must start one of the three escapes,
// because our formatter never writes a bare one.

type sdParam struct{ name, value string }

type sdElement struct {
	id     string
	params []sdParam
}

type syslogMsg struct {
	facility, severity int
	version            int
	timestamp          time.Time
	hostname, appName  string
	procID, msgID      string
	sd                 []sdElement
	msg                string
}

// param returns the first value of name in element id.
func (m syslogMsg) param(id, name string) (string, bool) {
	for _, e := range m.sd {
		if e.id == id {
			for _, p := range e.params {
				if p.name == name {
					return p.value, true
				}
			}
		}
	}
	return "", false
}

func (m syslogMsg) params(id, name string) []string {
	var out []string
	for _, e := range m.sd {
		if e.id == id {
			for _, p := range e.params {
				if p.name == name {
					out = append(out, p.value)
				}
			}
		}
	}
	return out
}

type parser struct {
	b   []byte
	pos int
}

func (p *parser) errorf(format string, a ...any) error {
	return fmt.Errorf("offset %d: %s", p.pos, fmt.Sprintf(format, a...))
}

func (p *parser) expect(c byte) error {
	if p.pos >= len(p.b) || p.b[p.pos] != c {
		return p.errorf("want %q", c)
	}
	p.pos++
	return nil
}

// token reads 1..max PRINTUSASCII up to the next SP.
func (p *parser) token(what string, max int) (string, error) {
	start := p.pos
	for p.pos < len(p.b) && p.b[p.pos] != ' ' {
		if c := p.b[p.pos]; c < 33 || c > 126 {
			return "", p.errorf("%s: byte %#x is not PRINTUSASCII", what, c)
		}
		p.pos++
	}
	n := p.pos - start
	if n == 0 || n > max {
		return "", p.errorf("%s: length %d not in 1..%d", what, n, max)
	}
	return string(p.b[start:p.pos]), nil
}

func parseRFC5424(b []byte) (syslogMsg, error) {
	var m syslogMsg
	p := &parser{b: b}
	if err := p.expect('<'); err != nil {
		return m, err
	}
	start := p.pos
	for p.pos < len(b) && p.pos-start < 4 && b[p.pos] >= '0' && b[p.pos] <= '9' {
		p.pos++
	}
	digits := string(b[start:p.pos])
	if len(digits) == 0 || len(digits) > 3 || (len(digits) > 1 && digits[0] == '0') {
		return m, p.errorf("PRIVAL %q", digits)
	}
	pri, _ := strconv.Atoi(digits)
	if pri > 191 {
		return m, p.errorf("PRIVAL %d > 191", pri)
	}
	m.facility, m.severity = pri/8, pri%8
	if err := p.expect('>'); err != nil {
		return m, err
	}
	if err := p.expect('1'); err != nil {
		return m, fmt.Errorf("VERSION: %w", err)
	}
	m.version = 1
	if err := p.expect(' '); err != nil {
		return m, err
	}
	ts, err := p.token("TIMESTAMP", 32)
	if err != nil {
		return m, err
	}
	if ts != "-" {
		if m.timestamp, err = parseTimestamp(ts); err != nil {
			return m, p.errorf("TIMESTAMP %q: %v", ts, err)
		}
	}
	for _, f := range []struct {
		dst  *string
		name string
		max  int
	}{{&m.hostname, "HOSTNAME", 255}, {&m.appName, "APP-NAME", 48}, {&m.procID, "PROCID", 128}, {&m.msgID, "MSGID", 32}} {
		if err := p.expect(' '); err != nil {
			return m, err
		}
		if *f.dst, err = p.token(f.name, f.max); err != nil {
			return m, err
		}
	}
	if err := p.expect(' '); err != nil {
		return m, err
	}
	if p.pos < len(b) && b[p.pos] == '-' {
		p.pos++
	} else {
		seen := map[string]bool{}
		for p.pos < len(b) && b[p.pos] == '[' {
			e, err := p.sdElement()
			if err != nil {
				return m, err
			}
			if seen[e.id] {
				return m, p.errorf("SD-ID %q repeated", e.id)
			}
			seen[e.id] = true
			m.sd = append(m.sd, e)
		}
		if len(m.sd) == 0 {
			return m, p.errorf("STRUCTURED-DATA: want '-' or '['")
		}
	}
	if p.pos == len(b) {
		return m, nil
	}
	if err := p.expect(' '); err != nil {
		return m, err
	}
	rest := b[p.pos:]
	if bytes.HasPrefix(rest, []byte("\xEF\xBB\xBF")) && !utf8.Valid(rest[3:]) {
		return m, p.errorf("MSG: BOM but not UTF-8")
	}
	m.msg = string(rest)
	return m, nil
}

func (p *parser) sdName(what string) (string, error) {
	start := p.pos
	for p.pos < len(p.b) {
		c := p.b[p.pos]
		if c == '=' || c == ' ' || c == ']' || c == '"' {
			break
		}
		if c < 33 || c > 126 {
			return "", p.errorf("%s: byte %#x", what, c)
		}
		p.pos++
	}
	n := p.pos - start
	if n == 0 || n > 32 {
		return "", p.errorf("%s: length %d not in 1..32", what, n)
	}
	return string(p.b[start:p.pos]), nil
}

func (p *parser) sdElement() (sdElement, error) {
	var e sdElement
	p.pos++ // '['
	id, err := p.sdName("SD-ID")
	if err != nil {
		return e, err
	}
	if at := strings.IndexByte(id, '@'); at >= 0 {
		name, pen := id[:at], id[at+1:]
		if name == "" || strings.Contains(pen, "@") || pen == "" || strings.Trim(pen, "0123456789.") != "" {
			return e, p.errorf("SD-ID %q is not name@enterprise-number", id)
		}
	} else if id != "timeQuality" && id != "origin" && id != "meta" {
		return e, p.errorf("SD-ID %q has no @ and is not IANA-registered", id)
	}
	e.id = id
	for {
		if p.pos >= len(p.b) {
			return e, p.errorf("SD-ELEMENT not closed")
		}
		if p.b[p.pos] == ']' {
			p.pos++
			return e, nil
		}
		if err := p.expect(' '); err != nil {
			return e, err
		}
		name, err := p.sdName("PARAM-NAME")
		if err != nil {
			return e, err
		}
		if err := p.expect('='); err != nil {
			return e, err
		}
		if err := p.expect('"'); err != nil {
			return e, err
		}
		var v []byte
		for {
			if p.pos >= len(p.b) {
				return e, p.errorf("PARAM-VALUE not closed")
			}
			c := p.b[p.pos]
			if c == '"' {
				p.pos++
				break
			}
			if c == ']' {
				return e, p.errorf("unescaped ']' in PARAM-VALUE")
			}
			if c == '\\' {
				if p.pos+1 >= len(p.b) {
					return e, p.errorf("backslash at end")
				}
				n := p.b[p.pos+1]
				if n != '"' && n != '\\' && n != ']' {
					return e, p.errorf("backslash before %q", n)
				}
				v = append(v, n)
				p.pos += 2
				continue
			}
			v = append(v, c)
			p.pos++
		}
		if !utf8.Valid(v) {
			return e, p.errorf("PARAM-VALUE of %s is not UTF-8", name)
		}
		e.params = append(e.params, sdParam{name, string(v)})
	}
}

// parseTimestamp checks FULL-DATE "T" FULL-TIME with at most 6 fraction digits.
func parseTimestamp(s string) (time.Time, error) {
	if len(s) < 20 || s[10] != 'T' {
		return time.Time{}, errors.New("not FULL-DATE T FULL-TIME")
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j-i-1 < 1 || j-i-1 > 6 {
			return time.Time{}, fmt.Errorf("TIME-SECFRAC has %d digits", j-i-1)
		}
	}
	if strings.HasSuffix(s, "z") || strings.Contains(s, "t") {
		return time.Time{}, errors.New("lower-case T or Z")
	}
	return time.Parse(time.RFC3339Nano, s)
}

// sampleEvents covers every kind, with values that need escaping.
func sampleEvents() []Event {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	dbv := map[string]uint{"main": 62, "daily": 27000, "bytecode": 339}
	return []Event{
		Detection{Time: t0, ScanID: "s-1", Node: "web-01", Container: "3f2a9c0e5b7d1a2b3c4d5e6f", Path: `/proc/42/root/srv/a "b"\c]d.exe`,
			ContainerPath: `/srv/a "b"\c]d.exe`, Signature: "Eicar-Test-Signature", Action: ActionMove, ActionResult: ActionOK,
			QuarantineID: "q-7", DBVersions: dbv},
		Detection{Time: t0, Node: "web-01", Path: "/tmp/x", Signature: "Win.Trojan.Agent-1", Action: ActionRemove,
			ActionResult: ActionFailed, ActionError: "unlink: permission denied"},
		ScanSummary{ScanID: "s-1", Node: "web-01", Trigger: TriggerSchedule, Result: ResultInfected, Start: t0, End: t0.Add(90 * time.Second),
			Duration: 90 * time.Second, Paths: []string{"/", "/srv,data"}, Files: 1000, Bytes: 1 << 30, Skipped: 5,
			SkippedByReason: map[string]int64{"excluded": 3, "too_large": 2}, Errors: 1, Detections: 1, IncrementalHits: 900,
			Containers: 2, DBVersions: dbv},
		UpdateEvent{Time: t0, Node: "web-01", Result: UpdateUpdated, Source: "https://mirror:6501", OldVersions: map[string]uint{"daily": 26999},
			NewVersions: map[string]uint{"daily": 27000}, Bytes: 2048, Duration: 1500 * time.Millisecond},
		UpdateEvent{Time: t0, Node: "web-01", Result: UpdateFailed, Error: `verify daily-27001.cdiff: signature: bad "sig"`, Stale: true},
		Alert{Time: t0, Node: "web-01", Name: AlertStaleDefinitions, Reason: "age", State: AlertFiring, Message: "definitions are 30h old",
			DBVersions: dbv, Age: 30 * time.Hour, Threshold: 24 * time.Hour},
	}
}

func TestFormatParsesStrictly(t *testing.T) {
	f := &formatter{facility: FacilityDaemon, hostname: "fallback", procID: "4242", maxSize: 8000}
	for i, ev := range sampleEvents() {
		t.Run(fmt.Sprintf("%d-%s", i, ev.Kind()), func(t *testing.T) {
			b := f.format(ev, uint32(i+1))
			m, err := parseRFC5424(b)
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if m.facility != int(FacilityDaemon) || m.severity != int(ev.severity()) {
				t.Errorf("facility/severity = %d/%d, want %d/%d", m.facility, m.severity, FacilityDaemon, ev.severity())
			}
			if m.appName != "avfleet" || m.procID != "4242" || m.hostname != "web-01" {
				t.Errorf("header app=%q procid=%q host=%q", m.appName, m.procID, m.hostname)
			}
			if m.msgID != strings.ToUpper(string(ev.Kind())) {
				t.Errorf("MSGID %q for %s", m.msgID, ev.Kind())
			}
			if !m.timestamp.Equal(ev.eventTime().Truncate(time.Microsecond)) {
				t.Errorf("timestamp %v, want %v", m.timestamp, ev.eventTime())
			}
			if seq, _ := m.param("meta", "sequenceId"); seq != strconv.Itoa(i+1) {
				t.Errorf("sequenceId %q", seq)
			}
			if m.msg != ev.text() {
				t.Errorf("MSG %q, want %q", m.msg, ev.text())
			}
			// Every field is present with its rendered value.
			for _, fl := range ev.fields() {
				if list, ok := fl.v.Any().([]string); ok {
					if got := m.params(SDID, fl.name); strings.Join(got, "\x00") != strings.Join(list, "\x00") {
						t.Errorf("%s = %q, want %q", fl.name, got, list)
					}
					continue
				}
				got, ok := m.param(SDID, fl.name)
				if want := sdValue(fl.v); !ok || got != want {
					t.Errorf("%s = %q (present %v), want %q", fl.name, got, ok, want)
				}
			}
		})
	}
}

func TestFormatDetectionFields(t *testing.T) {
	d := sampleEvents()[0].(Detection)
	f := &formatter{facility: FacilityDaemon, procID: "1", maxSize: 8000}
	m, err := parseRFC5424(f.format(d, 1))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"node": "web-01", "container": d.Container, "path": d.Path, "container_path": d.ContainerPath,
		"signature": "Eicar-Test-Signature", "action": "move", "action_result": "ok", "quarantine_id": "q-7",
		"db_versions": "bytecode:339,daily:27000,main:62", "time": "2025-03-04T05:06:07.123456789Z", "scan_id": "s-1",
	} {
		if got, _ := m.param(SDID, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if m.severity != int(SeverityWarning) {
		t.Errorf("severity %d, want warning", m.severity)
	}
}

func TestSeverities(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		want Severity
	}{
		{Detection{ActionResult: ActionOK}, SeverityWarning},
		{Detection{ActionResult: ActionFailed}, SeverityError},
		{ScanSummary{Result: ResultClean}, SeverityInfo},
		{ScanSummary{Result: ResultInfected}, SeverityNotice},
		{ScanSummary{Result: ResultError}, SeverityError},
		{UpdateEvent{Result: UpdateUpdated}, SeverityInfo},
		{UpdateEvent{Result: UpdateFailed}, SeverityError},
		{Alert{State: AlertFiring}, SeverityWarning},
		{Alert{State: AlertResolved}, SeverityNotice},
	} {
		if got := tc.ev.severity(); got != tc.want {
			t.Errorf("%#v: severity %d, want %d", tc.ev, got, tc.want)
		}
	}
}

func TestFormatTruncatesToValidMessage(t *testing.T) {
	long := strings.Repeat("ä/", 3000) // 9000 bytes, multi-byte runes
	d := Detection{Time: time.Now(), Node: "n", Path: long, ContainerPath: long, Signature: strings.Repeat("S", 700),
		Action: ActionNotify, ActionResult: ActionOK}
	for _, max := range []int{480, 600, 1024, 2048, 8000} {
		f := &formatter{facility: FacilityDaemon, procID: "1", maxSize: max}
		b := f.format(d, 9)
		if len(b) > max {
			t.Errorf("max %d: message is %d bytes", max, len(b))
		}
		m, err := parseRFC5424(b)
		if err != nil {
			t.Fatalf("max %d: %v", max, err)
		}
		if seq, _ := m.param("meta", "sequenceId"); seq != "9" {
			t.Errorf("max %d: sequenceId lost", max)
		}
		if !utf8.ValidString(m.msg) {
			t.Errorf("max %d: MSG cut inside a rune", max)
		}
		if p, ok := m.param(SDID, "path"); ok && !strings.HasPrefix(long, strings.TrimSuffix(p, "...")) {
			t.Errorf("max %d: path %q is not a prefix of the original", max, p)
		}
		if max >= 1024 {
			if _, ok := m.param(SDID, "signature"); !ok {
				t.Errorf("max %d: fields dropped although they fit when shortened", max)
			}
		}
	}
}

func TestHeaderField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "-"}, {"web-01", "web-01"}, {"has space", "has_space"}, {"tab\there", "tab_here"}, {"ünï", "_n_"}, {"\xffx", "_x"},
		{strings.Repeat("h", 300), strings.Repeat("h", 255)},
	} {
		if got := headerField(tc.in, 255); got != tc.want {
			t.Errorf("headerField(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseFacility(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Facility
		wantErr bool
	}{
		{"daemon", 3, false}, {"LOCAL0", 16, false}, {"local7", 23, false}, {"auth", 4, false},
		{"security", 13, false}, {"20", 20, false}, {"24", 0, true}, {"local8", 0, true}, {"", 0, true},
	} {
		got, err := ParseFacility(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseFacility(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParserRejects(t *testing.T) {
	// The parser must be able to fail, or the tests above prove nothing.
	for _, bad := range []string{
		`<192>1 2025-01-01T00:00:00Z h a p m -`,
		`<013>1 2025-01-01T00:00:00Z h a p m -`,
		`<13>2 2025-01-01T00:00:00Z h a p m -`,
		`<13>1 2025-01-01T00:00:00.1234567Z h a p m -`,
		`<13>1 2025-01-01 00:00:00Z h a p m -`,
		`<13>1 2025-01-01T00:00:00Z h a p m [x a="b"]`,
		`<13>1 2025-01-01T00:00:00Z h a p m [x@1 a="b]"]`,
		`<13>1 2025-01-01T00:00:00Z h a p m [x@1 a="b\c"]`,
		`<13>1 2025-01-01T00:00:00Z h a p m [x@1 a="b"`,
		`<13>1 2025-01-01T00:00:00Z h a p m [x@1 a="b"][x@1 c="d"]`,
		`<13>1 2025-01-01T00:00:00Z h a p 0123456789012345678901234567890123 -`,
		"<13>1 2025-01-01T00:00:00Z h a p m [x@1 a=\"\xff\"]",
		`<13>1 2025-01-01T00:00:00Z h a p m -x`,
	} {
		if _, err := parseRFC5424([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	good := `<13>1 2025-01-01T00:00:00.5+02:00 h a p m [x@1 a="\"\\\]" b=""][meta sequenceId="1"] text`
	m, err := parseRFC5424([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.param("x@1", "a"); v != `"\]` {
		t.Errorf("unescaped %q", v)
	}
}

// FuzzFormatRoundTrip: whatever the strings in an event, the message parses
// strictly and every value comes back as written (after the UTF-8 repair
// that JSON applies too).
func FuzzFormatRoundTrip(f *testing.F) {
	f.Add("/a/b", "Eicar", "web-01", "", "")
	f.Add(`/a"b\c]d`, `sig]"\`, "h o s t", `]]]`, "\\")
	f.Add("\xff\xfe/", "ä", "", "x\ny", "\"")
	f.Fuzz(func(t *testing.T, path, sig, node, container, qid string) {
		d := Detection{Time: time.Unix(1700000000, 5).UTC(), Node: node, Path: path, Signature: sig, Container: container,
			QuarantineID: qid, Action: ActionCopy, ActionResult: ActionOK, DBVersions: map[string]uint{"daily": 1}}
		fm := &formatter{facility: 16, hostname: "h", procID: "1", maxSize: 1 << 20}
		b := fm.format(d, 1)
		m, err := parseRFC5424(b)
		if err != nil {
			t.Fatalf("%v\n%q", err, b)
		}
		for name, want := range map[string]string{"path": path, "signature": sig, "container": container, "quarantine_id": qid} {
			got, _ := m.param(SDID, name)
			if want = strings.ToValidUTF8(want, "\uFFFD"); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
	})
}

// BenchmarkFormatDetection is the cost Report adds to a scan per detection.
func BenchmarkFormatDetection(b *testing.B) {
	f := &formatter{facility: FacilityDaemon, hostname: "h", procID: "1", maxSize: 8000}
	d := sampleEvents()[0]
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.format(d, uint32(i))
	}
}
