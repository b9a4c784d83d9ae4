package upstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Resolver looks up DNS TXT records; *net.Resolver is one. Tests feed records
// through their own.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// The TXT record of current.cvd.clamav.net is colon-separated:
// 0 newest ClamAV version, 1 main, 2 daily, 3 record time (unix seconds),
// 4 version-warning flag, 5 f-level, 6 safebrowsing, 7 bytecode.
var mainRecordField = map[string]int{"main": 1, "daily": 2, "safebrowsing": 6, "bytecode": 7}

const mainRecordTimeField = 3

// dnsMaxAge is how old a record may be before it is ignored and the header
// check is used instead (freshclam's DNS_WARNING_THRESHOLD_HOURS).
const dnsMaxAge = 12 * time.Hour

// updateInfo is a parsed main TXT record.
type updateInfo struct {
	fields     []string
	recordTime time.Time
}

// parseUpdateInfo parses the main TXT record. Only the record time must be
// valid; a database field is checked when it is asked for.
func parseUpdateInfo(rec string) (updateInfo, error) {
	f := strings.Split(strings.TrimSpace(rec), ":")
	if len(f) <= mainRecordTimeField {
		return updateInfo{}, fmt.Errorf("TXT record %q has %d colon-separated fields, want at least %d", clip(rec), len(f), mainRecordTimeField+1)
	}
	t, err := strconv.ParseInt(f[mainRecordTimeField], 10, 64)
	if err != nil || t <= 0 {
		return updateInfo{}, fmt.Errorf("TXT record %q: field %d (record time) %q is not unix seconds", clip(rec), mainRecordTimeField, clip(f[mainRecordTimeField]))
	}
	return updateInfo{fields: f, recordTime: time.Unix(t, 0).UTC()}, nil
}

// version returns the version of db in the record; ok is false when the
// record has no field for db or it is 0 (a mirror's dns.txt says 0 for a
// database it does not hold) or not a number.
func (u updateInfo) version(db string) (uint, bool) {
	i, known := mainRecordField[db]
	if !known || i >= len(u.fields) {
		return 0, false
	}
	v, err := strconv.ParseUint(u.fields[i], 10, 32)
	if err != nil || v == 0 {
		return 0, false
	}
	return uint(v), true
}

// parseDBRecord parses the per-database record (<db>.cvd.clamav.net):
// "version:record time".
func parseDBRecord(rec string) (uint, time.Time, error) {
	f := strings.Split(strings.TrimSpace(rec), ":")
	if len(f) < 2 {
		return 0, time.Time{}, fmt.Errorf("TXT record %q: want \"version:record time\"", clip(rec))
	}
	v, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil || v == 0 {
		return 0, time.Time{}, fmt.Errorf("TXT record %q: version %q is not a positive number", clip(rec), clip(f[0]))
	}
	t, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || t <= 0 {
		return 0, time.Time{}, fmt.Errorf("TXT record %q: record time %q is not unix seconds", clip(rec), clip(f[1]))
	}
	return uint(v), time.Unix(t, 0).UTC(), nil
}

// dbRecordName is where freshclam looks for a database the main record does
// not list: current.cvd.clamav.net -> <db>.cvd.clamav.net. "" when name has
// a single label.
func dbRecordName(name, db string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 || i == len(name)-1 {
		return ""
	}
	return db + name[i:]
}

// fresh reports whether a record made at t may be used at now.
func fresh(t, now time.Time) bool { return now.Sub(t) <= dnsMaxAge }

// clip shortens s for an error message.
func clip(s string) string {
	const n = 60
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
