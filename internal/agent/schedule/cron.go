package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a parsed 5-field cron expression (minute hour day-of-month month
// day-of-week), with the usual Vixie cron meaning: lists, ranges, steps,
// month and weekday names, 0 or 7 for Sunday, and day-of-month OR
// day-of-week when both are restricted.
type Cron struct {
	expr                          string
	minute, hour, dom, month, dow uint64 // bit n set: value n allowed
	domStar, dowStar              bool   // the field started with '*'
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// ParseCron parses a 5-field cron expression.
func ParseCron(expr string) (*Cron, error) {
	fs := strings.Fields(expr)
	if len(fs) != 5 {
		return nil, fmt.Errorf("cron %q: want 5 fields (minute hour day month weekday), got %d", expr, len(fs))
	}
	c := &Cron{expr: strings.Join(fs, " ")}
	dst := [5]*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, f := range cronFields {
		bits, err := parseCronField(fs[i], f)
		if err != nil {
			return nil, fmt.Errorf("cron %q: %s field %q: %w", expr, f.name, fs[i], err)
		}
		*dst[i] = bits
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar = strings.HasPrefix(fs[2], "*")
	c.dowStar = strings.HasPrefix(fs[4], "*")
	if !c.possible() {
		return nil, fmt.Errorf("cron %q: day of month and month never occur together", expr)
	}
	return c, nil
}

func parseCronField(s string, f cronField) (uint64, error) {
	var bits uint64
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return 0, fmt.Errorf("empty list item")
		}
		rng, stepStr, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("step %q is not a number in 1..%d", stepStr, f.max)
			}
			step = n
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*":
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = cronValue(a, f); err != nil {
				return 0, err
			}
			switch {
			case isRange:
				if hi, err = cronValue(b, f); err != nil {
					return 0, err
				}
				if hi < lo {
					return 0, fmt.Errorf("range %q runs backwards", rng)
				}
			case hasStep: // "N/step" means N through the maximum
			default:
				hi = lo
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func cronValue(s string, f cronField) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || len(s) > 2 || v < f.min || v > f.max {
		return 0, fmt.Errorf("%q is not a value in %d..%d", s, f.min, f.max)
	}
	return v, nil
}

var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// possible reports whether some date matches: "0 0 30 2 *" never does.
func (c *Cron) possible() bool {
	if !c.dowStar && !c.domStar {
		return true // OR: the weekday alone matches every week
	}
	if c.domStar {
		return true
	}
	for m := 1; m <= 12; m++ {
		if c.month&(1<<uint(m)) == 0 {
			continue
		}
		for d := 1; d <= daysIn[m]; d++ {
			if c.dom&(1<<uint(d)) != 0 {
				return true
			}
		}
	}
	return false
}

func (c *Cron) String() string { return c.expr }

// Matches reports whether t, to the minute, is a time the expression names.
func (c *Cron) Matches(t time.Time) bool {
	return c.minute&(1<<uint(t.Minute())) != 0 && c.hour&(1<<uint(t.Hour())) != 0 &&
		c.month&(1<<uint(t.Month())) != 0 && c.dayMatches(t)
}

func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// Next returns the first matching minute strictly after `after`, in after's
// location, or the zero time if none comes within 10 years. In a daylight
// saving gap the times that do not exist are skipped.
func (c *Cron) Next(after time.Time) time.Time {
	loc := after.Location()
	t := after.Truncate(time.Minute).Add(time.Minute)
	limit := after.Year() + 10
	// Each step moves to the start of the next month, day, hour or minute, so
	// a match (or the limit) is reached in at most a few thousand steps; the
	// counter only guards against a zone database that keeps moving time back.
	for range 1 << 20 {
		if t.Year() > limit {
			break
		}
		y, mo, d := t.Date()
		h, mi := t.Hour(), t.Minute()
		var n time.Time
		switch {
		case c.month&(1<<uint(mo)) == 0:
			n = time.Date(y, mo+1, 1, 0, 0, 0, 0, loc)
		case !c.dayMatches(t):
			n = time.Date(y, mo, d+1, 0, 0, 0, 0, loc)
		case c.hour&(1<<uint(h)) == 0:
			n = time.Date(y, mo, d, h+1, 0, 0, 0, loc)
		case c.minute&(1<<uint(mi)) == 0:
			n = time.Date(y, mo, d, h, mi+1, 0, 0, loc)
		default:
			return t
		}
		if !n.After(t) {
			// An ambiguous wall time (the repeated hour when clocks go back)
			// can resolve to the earlier instant; move on in absolute time.
			n = t.Add(time.Minute)
		}
		t = n
	}
	return time.Time{}
}
