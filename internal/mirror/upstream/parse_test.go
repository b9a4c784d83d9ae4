package upstream

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseUpdateInfo(t *testing.T) {
	cases := []struct {
		rec     string
		err     string
		time    int64
		version map[string]uint // 0: not known from the record
	}{
		{rec: "1.4.3:62:27480:1732613461:1:90:49191:339", time: 1732613461,
			version: map[string]uint{"main": 62, "daily": 27480, "safebrowsing": 49191, "bytecode": 339, "test": 0}},
		{rec: " 0.0.0:0:27480:1732613461:0:81:0:0 ", time: 1732613461, // a mirror's dns.txt: 0 = does not hold it
			version: map[string]uint{"main": 0, "daily": 27480, "bytecode": 0}},
		{rec: "1.4.3:62:27480:1732613461", time: 1732613461, // short record: later fields unknown
			version: map[string]uint{"daily": 27480, "bytecode": 0}},
		{rec: "1.4.3:62:x:1732613461:0:90:0:339", time: 1732613461, version: map[string]uint{"daily": 0, "main": 62}},
		{rec: "1.4.3:62:27480", err: "want at least 4"},
		{rec: "1.4.3:62:27480:yesterday:0", err: "record time"},
		{rec: "1.4.3:62:27480:-5:0", err: "record time"},
		{rec: "", err: "want at least 4"},
		{rec: "<html>", err: "want at least 4"},
	}
	for _, tc := range cases {
		t.Run(tc.rec, func(t *testing.T) {
			u, err := parseUpdateInfo(tc.rec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.recordTime.Unix() != tc.time {
				t.Errorf("record time %d, want %d", u.recordTime.Unix(), tc.time)
			}
			for db, want := range tc.version {
				got, ok := u.version(db)
				if ok != (want != 0) || got != want {
					t.Errorf("version(%s) = %d, %v; want %d", db, got, ok, want)
				}
			}
		})
	}
}

func TestParseDBRecord(t *testing.T) {
	cases := []struct {
		rec  string
		v    uint
		time int64
		err  string
	}{
		{rec: "6:1732613461", v: 6, time: 1732613461},
		{rec: "27480:1732613461:extra", v: 27480, time: 1732613461},
		{rec: "6", err: "want"},
		{rec: "0:1732613461", err: "positive"},
		{rec: "six:1732613461", err: "positive"},
		{rec: "6:now", err: "record time"},
	}
	for _, tc := range cases {
		v, tm, err := parseDBRecord(tc.rec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one containing %q", tc.rec, err, tc.err)
			}
			continue
		}
		if err != nil || v != tc.v || tm.Unix() != tc.time {
			t.Errorf("%q: %d %d %v, want %d %d", tc.rec, v, tm.Unix(), err, tc.v, tc.time)
		}
	}
}

func TestDBRecordName(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"current.cvd.clamav.net", "test"}:   "test.cvd.clamav.net",
		{"current.cvd.example.org", "daily"}: "daily.cvd.example.org",
		{"localhost", "test"}:                "",
		{"current.", "test"}:                 "",
	} {
		if got := dbRecordName(in[0], in[1]); got != want {
			t.Errorf("dbRecordName(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestFresh(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for d, want := range map[time.Duration]bool{0: true, 11 * time.Hour: true, 12 * time.Hour: true, 12*time.Hour + time.Second: false, -time.Hour: true} {
		if got := fresh(now.Add(-d), now); got != want {
			t.Errorf("record %s old: fresh = %v, want %v", d, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"", 4 * time.Hour},
		{"3600", time.Hour},
		{" 120 ", 2 * time.Minute},
		{"0", 4 * time.Hour},
		{"-10", 4 * time.Hour},
		{"soon", 4 * time.Hour},
		{now.Add(90 * time.Minute).Format(http.TimeFormat), 90 * time.Minute},
		{now.Add(-time.Hour).Format(http.TimeFormat), 4 * time.Hour},
		{"99999999999999999", 365 * 24 * time.Hour},
	}
	for _, tc := range cases {
		got, why := retryAfter(tc.in, now)
		if got != tc.want || why == "" {
			t.Errorf("retryAfter(%q) = %s (%q), want %s", tc.in, got, why, tc.want)
		}
	}
}

func TestRangeTotal(t *testing.T) {
	for in, want := range map[string]int64{"bytes 0-511/8394": 8394, "bytes 0-511/*": -1, "": -1, "bytes 0-511/-3": -1, "garbage": -1} {
		if got := rangeTotal(in); got != want {
			t.Errorf("rangeTotal(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestDBOf(t *testing.T) {
	for in, want := range map[string]string{"daily-27480.cdiff": "daily", "daily.cvd": "daily", "test-6.cdiff": "test",
		"safe-browsing.cvd": "safe-browsing", "my-db-2.cdiff": "my-db"} {
		if got := dbOf(in); got != want {
			t.Errorf("dbOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJitter(t *testing.T) {
	d := 2 * time.Hour
	lo, hi := d, time.Duration(0)
	for range 2000 {
		j := jitter(d)
		lo, hi = min(lo, j), max(hi, j)
	}
	if lo < d*3/4 || hi > d*5/4 {
		t.Fatalf("jitter(%s) ranged %s..%s, want within 1h30m..2h30m", d, lo, hi)
	}
	if hi-lo < d/4 {
		t.Fatalf("jitter(%s) ranged only %s..%s: not spread", d, lo, hi)
	}
}

func FuzzParseUpdateInfo(f *testing.F) {
	for _, s := range []string{"1.4.3:62:27480:1732613461:1:90:49191:339", "0.0.0:0:0:1:0:0:0:0", "::::::::", "a:b:c:d", "<html>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseUpdateInfo(s)
		if err != nil {
			return
		}
		for db := range mainRecordField {
			if v, ok := u.version(db); ok && v == 0 {
				t.Fatalf("version(%s) ok with 0", db)
			}
		}
	})
}

func FuzzParseDBRecord(f *testing.F) {
	for _, s := range []string{"6:1732613461", "0:0", ":", "27480:1732613461:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, tm, err := parseDBRecord(s)
		if err == nil && (v == 0 || tm.Unix() <= 0) {
			t.Fatalf("%q accepted as version %d at %v", s, v, tm)
		}
	})
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "3600", "Wed, 26 Nov 2026 13:30:00 GMT", "-1", "1e9", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, why := retryAfter(s, now)
		if d <= 0 || d > 366*24*time.Hour || why == "" {
			t.Fatalf("retryAfter(%q) = %s %q", s, d, why)
		}
	})
}

func FuzzRangeTotal(f *testing.F) {
	for _, s := range []string{"bytes 0-511/8394", "bytes */100", "/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n := rangeTotal(s); n < -1 {
			t.Fatalf("rangeTotal(%q) = %d", s, n)
		}
	})
}
