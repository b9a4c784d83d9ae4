package schedule

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the DST test must not depend on the host's zone files
)

func TestParseCronErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"0 2 * *", "want 5 fields"},
		{"60 2 * * *", "minute field"},
		{"0 24 * * *", "hour field"},
		{"0 0 0 * *", "day of month field"},
		{"0 0 * 13 *", "month field"},
		{"0 0 * * 8", "day of week field"},
		{"0 0 * * fri-mon", "runs backwards"},
		{"*/0 * * * *", "step"},
		{"1,,2 * * * *", "empty list item"},
		{"0 0 30 feb *", "never occur together"},
		{"0 0 31 4,6,9,11 *", "never occur together"},
		{"a * * * *", "is not a value"},
		{"007 * * * *", "is not a value"},
	} {
		_, err := ParseCron(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCron(%q) = %v, want error containing %q", tc.expr, err, tc.want)
		}
	}
}

func TestCronNext(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// 2024-01-01 is a Monday; 2024 is a leap year.
	for _, tc := range []struct{ expr, after, want string }{
		{"0 2 * * *", "2024-01-01 00:00", "2024-01-01 02:00"},
		{"0 2 * * *", "2024-01-01 02:00", "2024-01-02 02:00"}, // strictly after
		{"*/15 * * * *", "2024-01-01 10:07", "2024-01-01 10:15"},
		{"30 */6 * * *", "2024-01-01 06:31", "2024-01-01 12:30"},
		{"0 9-17/4 * * mon-fri", "2024-01-05 17:00", "2024-01-08 09:00"}, // Fri 17:00 -> Mon 9:00
		{"0 0 * * 0", "2024-01-01 00:00", "2024-01-07 00:00"},            // Sunday
		{"0 0 * * 7", "2024-01-01 00:00", "2024-01-07 00:00"},            // 7 is Sunday
		{"0 0 29 feb *", "2024-03-01 00:00", "2028-02-29 00:00"},
		{"0 0 1,15 * 1", "2024-01-02 00:00", "2024-01-08 00:00"}, // dom OR dow: Monday 8th
		{"0 0 13 * 5", "2024-01-06 00:00", "2024-01-12 00:00"},   // Friday 12th comes before the 13th
		{"0 0 * jan,JUL *", "2024-02-01 00:00", "2024-07-01 00:00"},
		{"5/20 * * * *", "2024-01-01 00:46", "2024-01-01 01:05"},
		{"59 23 31 12 *", "2024-01-01 00:00", "2024-12-31 23:59"},
	} {
		c, err := ParseCron(tc.expr)
		if err != nil {
			t.Fatalf("ParseCron(%q): %v", tc.expr, err)
		}
		got := c.Next(utc(tc.after))
		if want := utc(tc.want); !got.Equal(want) {
			t.Errorf("%q after %s = %s, want %s", tc.expr, tc.after, got, want)
		}
		if !c.Matches(got) {
			t.Errorf("%q: Next gave %s, which it does not match", tc.expr, got)
		}
	}
}

func TestCronNextDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatalf("load zone: %v", err)
	}
	c, err := ParseCron("30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// 2024-03-10 02:30 does not exist in New York: that day is skipped.
	got := c.Next(time.Date(2024, 3, 9, 12, 0, 0, 0, ny))
	if want := time.Date(2024, 3, 11, 2, 30, 0, 0, ny); !got.Equal(want) {
		t.Errorf("across spring forward: %s, want %s", got, want)
	}
	// 2024-11-03 01:30 happens twice; every minute is found once, in order.
	c, _ = ParseCron("* 1 * * *")
	t0 := time.Date(2024, 11, 3, 0, 59, 0, 0, ny)
	prev, n := t0, 0
	for range 200 {
		next := c.Next(prev)
		if !next.After(prev) {
			t.Fatalf("Next(%s) = %s went backwards", prev, next)
		}
		if next.Day() != 3 {
			break
		}
		prev, n = next, n+1
	}
	if n < 60 {
		t.Errorf("found %d 01:xx minutes on the fall-back day, want at least 60", n)
	}
}

func FuzzCron(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "*/5 1-3,7 1 jan-mar mon", "0 0 29 2 *", "1-59/7 */3 * * 0-7", "* * * * *"} {
		f.Add(s)
	}
	base := time.Date(2024, 5, 17, 13, 21, 7, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCron(s)
		if err != nil {
			return
		}
		n := c.Next(base)
		if n.IsZero() {
			t.Fatalf("%q: parsed but Next found no time (should have been rejected)", s)
		}
		if !n.After(base) || !c.Matches(n) || n.Second() != 0 {
			t.Fatalf("%q: Next(%s) = %s does not match or is not after", s, base, n)
		}
		// No matching minute is skipped between base and n.
		for m := base.Truncate(time.Minute).Add(time.Minute); m.Before(n) && m.Sub(base) < 48*time.Hour; m = m.Add(time.Minute) {
			if c.Matches(m) {
				t.Fatalf("%q: Next(%s) = %s skipped %s", s, base, n, m)
			}
		}
	})
}
