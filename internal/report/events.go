package report

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind names an event type. It is the "event" field of the JSON log line and,
// upper-cased, the syslog MSGID.
type Kind string

const (
	KindDetection Kind = "detection"
	KindScan      Kind = "scan"
	KindUpdate    Kind = "update"
	KindAlert     Kind = "alert"
)

// Event is one of Detection, ScanSummary, UpdateEvent or Alert. The set is
// closed so that every sink handles every kind.
type Event interface {
	Kind() Kind
	eventTime() time.Time
	eventNode() string
	severity() Severity
	// logMessage is the constant msg of the log line, so queries can match it.
	logMessage() string
	// text is the human line of the syslog MSG part.
	text() string
	fields() []field
}

// Actions applied to an infected file (agent.yaml scan.action).
const (
	ActionNotify = "notify"
	ActionCopy   = "copy"
	ActionMove   = "move"
	ActionRemove = "remove"
)

// Action results.
const (
	ActionOK     = "ok"
	ActionFailed = "failed"
)

// Detection is one infected file. Container is empty for the host; for a
// container, Path is where the agent read the file (/proc/PID/root/...) and
// ContainerPath the path inside the container.
type Detection struct {
	Time          time.Time       `json:"time"`
	ScanID        string          `json:"scan_id"`
	Node          string          `json:"node"`
	Container     string          `json:"container"`
	Path          string          `json:"path"`
	ContainerPath string          `json:"container_path"`
	Signature     string          `json:"signature"`
	Action        string          `json:"action"`        // notify | copy | move | remove
	ActionResult  string          `json:"action_result"` // ok | failed
	ActionError   string          `json:"action_error"`  // why the action failed
	QuarantineID  string          `json:"quarantine_id"` // for copy and move
	DBVersions    map[string]uint `json:"db_versions"`
}

// Scan triggers.
const (
	TriggerSchedule = "schedule"
	TriggerOnDemand = "on-demand"
)

// Scan results, following clamscan's exit codes: clean (0), infected (1),
// error (2: the scan could not finish); cancelled when the agent stopped it.
const (
	ResultClean     = "clean"
	ResultInfected  = "infected"
	ResultError     = "error"
	ResultCancelled = "cancelled"
)

// ScanSummary is one finished (or failed) scan. Errors counts files that
// could not be scanned; Error says why a scan failed as a whole.
type ScanSummary struct {
	ScanID          string           `json:"scan_id"`
	Node            string           `json:"node"`
	Trigger         string           `json:"trigger"` // schedule | on-demand
	Result          string           `json:"result"`  // clean | infected | error | cancelled
	Error           string           `json:"error"`
	Start           time.Time        `json:"start"`
	End             time.Time        `json:"end"`
	Duration        time.Duration    `json:"-"` // duration_seconds in JSON
	Paths           []string         `json:"paths"`
	Files           int64            `json:"files"`
	Bytes           int64            `json:"bytes"`
	Skipped         int64            `json:"skipped"`
	SkippedByReason map[string]int64 `json:"skipped_by_reason"`
	Errors          int64            `json:"errors"`
	Detections      int64            `json:"detections"`
	IncrementalHits int64            `json:"incremental_hits"`
	Containers      int64            `json:"containers"`
	DBVersions      map[string]uint  `json:"db_versions"`
}

// Update results.
const (
	UpdateUpdated = "updated" // a new set is installed and clamd confirmed it
	UpdateCurrent = "current" // nothing newer on the mirror
	UpdateFailed  = "failed"
)

// UpdateEvent is one definitions update cycle. Stale is true when, after this
// cycle, the installed definitions are older than report.stale_after.
type UpdateEvent struct {
	Time        time.Time       `json:"time"`
	Node        string          `json:"node"`
	Result      string          `json:"result"` // updated | current | failed
	Source      string          `json:"source"` // mirror URL
	OldVersions map[string]uint `json:"old_versions"`
	NewVersions map[string]uint `json:"new_versions"`
	Bytes       int64           `json:"bytes"`
	Duration    time.Duration   `json:"-"` // duration_seconds in JSON
	Error       string          `json:"error"`
	Stale       bool            `json:"stale"`
}

// Alert names.
const (
	AlertStaleDefinitions = "stale_definitions"
)

// Alert states.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Alert is a condition an operator must act on, raised when it starts and
// sent again as resolved when it ends; an alert with several reasons is
// raised and resolved per reason. For stale_definitions, Threshold is
// report.stale_after and Age is, for reason "age", how long ago the
// installed definitions were built, for reason "mirror", how long ago they
// were last confirmed current with a mirror.
type Alert struct {
	Time       time.Time       `json:"time"`
	Node       string          `json:"node"`
	Name       string          `json:"name"`   // stale_definitions
	Reason     string          `json:"reason"` // stale_definitions: age | mirror
	State      string          `json:"state"`  // firing | resolved
	Message    string          `json:"message"`
	DBVersions map[string]uint `json:"db_versions"`
	Age        time.Duration   `json:"-"` // age_seconds in JSON
	Threshold  time.Duration   `json:"-"` // threshold_seconds in JSON
}

func (Detection) Kind() Kind   { return KindDetection }
func (ScanSummary) Kind() Kind { return KindScan }
func (UpdateEvent) Kind() Kind { return KindUpdate }
func (Alert) Kind() Kind       { return KindAlert }

func (d Detection) eventTime() time.Time   { return d.Time }
func (s ScanSummary) eventTime() time.Time { return s.End }
func (u UpdateEvent) eventTime() time.Time { return u.Time }
func (a Alert) eventTime() time.Time       { return a.Time }

func (d Detection) eventNode() string   { return d.Node }
func (s ScanSummary) eventNode() string { return s.Node }
func (u UpdateEvent) eventNode() string { return u.Node }
func (a Alert) eventNode() string       { return a.Node }

// Severities follow one rule: error = something failed, warning = a person
// must look (a virus, an alert), notice = noteworthy but expected, info = routine.
func (d Detection) severity() Severity {
	if d.ActionResult == ActionFailed {
		return SeverityError
	}
	return SeverityWarning
}

func (s ScanSummary) severity() Severity {
	switch s.Result {
	case ResultError:
		return SeverityError
	case ResultInfected, ResultCancelled:
		return SeverityNotice
	}
	return SeverityInfo
}

func (u UpdateEvent) severity() Severity {
	if u.Result == UpdateFailed {
		return SeverityError
	}
	return SeverityInfo
}

func (a Alert) severity() Severity {
	if a.State == AlertResolved {
		return SeverityNotice
	}
	return SeverityWarning
}

func (Detection) logMessage() string   { return "virus found" }
func (ScanSummary) logMessage() string { return "scan finished" }
func (u UpdateEvent) logMessage() string {
	if u.Result == UpdateFailed {
		return "definitions update failed"
	}
	return "definitions update"
}
func (Alert) logMessage() string { return "alert" }

func (d Detection) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "virus found: %s: %s", d.Path, d.Signature)
	if d.Container != "" {
		fmt.Fprintf(&b, " (container %s, %s)", shortID(d.Container), d.ContainerPath)
	}
	fmt.Fprintf(&b, "; action %s: %s", d.Action, d.ActionResult)
	if d.ActionError != "" {
		b.WriteString(": " + d.ActionError)
	}
	return b.String()
}

func (s ScanSummary) text() string {
	t := fmt.Sprintf("scan %s (%s) %s: %d files, %d bytes, %d detections, %d errors, %d skipped, %d unchanged, in %s",
		s.ScanID, s.Trigger, s.Result, s.Files, s.Bytes, s.Detections, s.Errors, s.Skipped, s.IncrementalHits,
		s.Duration.Round(time.Millisecond))
	if s.Error != "" {
		t += ": " + s.Error
	}
	return t
}

func (u UpdateEvent) text() string {
	switch u.Result {
	case UpdateFailed:
		return fmt.Sprintf("definitions update failed (installed %s): %s", versionsString(u.OldVersions), u.Error)
	case UpdateCurrent:
		return "definitions are current: " + versionsString(u.NewVersions)
	}
	return fmt.Sprintf("definitions updated: %s -> %s (%d bytes)", versionsString(u.OldVersions), versionsString(u.NewVersions), u.Bytes)
}

func (a Alert) text() string {
	name := a.Name
	if a.Reason != "" {
		name += " (" + a.Reason + ")"
	}
	if a.Message != "" {
		return fmt.Sprintf("alert %s %s: %s", name, a.State, a.Message)
	}
	return fmt.Sprintf("alert %s %s", name, a.State)
}

// field is one named value of an event, in the order it appears in the JSON
// log line and the syslog structured data. The names equal the JSON tags.
type field struct {
	name string
	v    slog.Value
}

func str(name, v string) field                { return field{name, slog.StringValue(v)} }
func i64(name string, v int64) field          { return field{name, slog.Int64Value(v)} }
func secs(name string, d time.Duration) field { return field{name, slog.Float64Value(d.Seconds())} }
func tm(name string, t time.Time) field       { return field{name, slog.TimeValue(t)} }

func versions(name string, m map[string]uint) field {
	attrs := make([]slog.Attr, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		attrs = append(attrs, slog.Uint64(k, uint64(m[k])))
	}
	return field{name, slog.GroupValue(attrs...)}
}

func counts(name string, m map[string]int64) field {
	attrs := make([]slog.Attr, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		attrs = append(attrs, slog.Int64(k, m[k]))
	}
	return field{name, slog.GroupValue(attrs...)}
}

func (d Detection) fields() []field {
	return []field{
		tm("time", d.Time),
		str("scan_id", d.ScanID),
		str("node", d.Node),
		str("container", d.Container),
		str("path", d.Path),
		str("container_path", d.ContainerPath),
		str("signature", d.Signature),
		str("action", d.Action),
		str("action_result", d.ActionResult),
		str("action_error", d.ActionError),
		str("quarantine_id", d.QuarantineID),
		versions("db_versions", d.DBVersions),
	}
}

func (s ScanSummary) fields() []field {
	return []field{
		str("scan_id", s.ScanID),
		str("node", s.Node),
		str("trigger", s.Trigger),
		str("result", s.Result),
		str("error", s.Error),
		tm("start", s.Start),
		tm("end", s.End),
		secs("duration_seconds", s.Duration),
		{"paths", slog.AnyValue(nonNil(s.Paths))},
		i64("files", s.Files),
		i64("bytes", s.Bytes),
		i64("skipped", s.Skipped),
		counts("skipped_by_reason", s.SkippedByReason),
		i64("errors", s.Errors),
		i64("detections", s.Detections),
		i64("incremental_hits", s.IncrementalHits),
		i64("containers", s.Containers),
		versions("db_versions", s.DBVersions),
	}
}

func (u UpdateEvent) fields() []field {
	return []field{
		tm("time", u.Time),
		str("node", u.Node),
		str("result", u.Result),
		str("source", u.Source),
		versions("old_versions", u.OldVersions),
		versions("new_versions", u.NewVersions),
		i64("bytes", u.Bytes),
		secs("duration_seconds", u.Duration),
		str("error", u.Error),
		{"stale", slog.BoolValue(u.Stale)},
	}
}

func (a Alert) fields() []field {
	return []field{
		tm("time", a.Time),
		str("node", a.Node),
		str("name", a.Name),
		str("reason", a.Reason),
		str("state", a.State),
		str("message", a.Message),
		versions("db_versions", a.DBVersions),
		secs("age_seconds", a.Age),
		secs("threshold_seconds", a.Threshold),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// JSON: durations are float seconds under a *_seconds name, so a SIEM needs
// no knowledge of Go's nanosecond time.Duration.

func (s ScanSummary) MarshalJSON() ([]byte, error) {
	type plain ScanSummary
	return json.Marshal(struct {
		plain
		DurationSeconds float64 `json:"duration_seconds"`
	}{plain(s), s.Duration.Seconds()})
}

func (s *ScanSummary) UnmarshalJSON(b []byte) error {
	type plain ScanSummary
	var v struct {
		plain
		DurationSeconds float64 `json:"duration_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = ScanSummary(v.plain)
	s.Duration = fromSeconds(v.DurationSeconds)
	return nil
}

func (u UpdateEvent) MarshalJSON() ([]byte, error) {
	type plain UpdateEvent
	return json.Marshal(struct {
		plain
		DurationSeconds float64 `json:"duration_seconds"`
	}{plain(u), u.Duration.Seconds()})
}

func (u *UpdateEvent) UnmarshalJSON(b []byte) error {
	type plain UpdateEvent
	var v struct {
		plain
		DurationSeconds float64 `json:"duration_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*u = UpdateEvent(v.plain)
	u.Duration = fromSeconds(v.DurationSeconds)
	return nil
}

func (a Alert) MarshalJSON() ([]byte, error) {
	type plain Alert
	return json.Marshal(struct {
		plain
		AgeSeconds       float64 `json:"age_seconds"`
		ThresholdSeconds float64 `json:"threshold_seconds"`
	}{plain(a), a.Age.Seconds(), a.Threshold.Seconds()})
}

func (a *Alert) UnmarshalJSON(b []byte) error {
	type plain Alert
	var v struct {
		plain
		AgeSeconds       float64 `json:"age_seconds"`
		ThresholdSeconds float64 `json:"threshold_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*a = Alert(v.plain)
	a.Age = fromSeconds(v.AgeSeconds)
	a.Threshold = fromSeconds(v.ThresholdSeconds)
	return nil
}

func fromSeconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

// versionsString renders {"daily":27000,"main":62} as "daily:27000,main:62",
// the form used in syslog structured data and human lines.
func versionsString(m map[string]uint) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+":"+strconv.FormatUint(uint64(m[k]), 10))
	}
	return strings.Join(parts, ",")
}

// shortID is the 12-character form docker and podman print.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
