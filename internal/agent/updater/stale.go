package updater

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/report"
)

// The stale_definitions alert has two independent reasons, raised and
// resolved each on its own (the "reason" of the report.Alert and the label
// of avfleet_agent_definitions_stale_reason):
//
//   - StaleAge: the installed definitions were built more than StaleAfter
//     ago. This is what an auditor means by "current definitions", and the
//     only check that sees a node in sync with a mirror nobody feeds (an
//     air-gapped mirror without imports, an online one whose upstream sync
//     is failing or held).
//   - StaleMirror: the node has not confirmed with any mirror within
//     StaleAfter that it runs what the mirror serves (the mirror or the way
//     to it is down, or every update fails). Definitions can be young and
//     still miss a day of updates this way.
const (
	StaleAge    = "age"
	StaleMirror = "mirror"
)

// staleReasons is which reasons hold (or which alerts are raised).
type staleReasons struct{ age, mirror bool }

func (s staleReasons) any() bool { return s.age || s.mirror }

func (s staleReasons) list() []string {
	var l []string
	if s.age {
		l = append(l, StaleAge)
	}
	if s.mirror {
		l = append(l, StaleMirror)
	}
	return l
}

// defsAge is how old the installed definitions are taken to be.
type defsAge struct {
	none  bool      // no database installed at all
	built time.Time // zero: no database says when it was built
	from  string    // the database built is taken from
	ver   uint      // its version
}

// definitionsAge dates a set by daily's build time when daily is installed:
// ClamAV publishes new signatures in daily several times a day, while main
// and bytecode go months without a new version, so an old main is normal
// and a young bytecode says nothing about daily. Without daily (an
// organisation's own databases, the test set) the newest database dates
// the set: it is the last time anything new arrived. Databases whose header
// has no build time are left out.
func definitionsAge(s *Set) defsAge {
	if s == nil || len(s.DBs) == 0 {
		return defsAge{none: true}
	}
	if d := s.DBs["daily"]; d != nil && !d.Header.Time.IsZero() {
		return defsAge{built: d.Header.Time, from: d.Name, ver: d.Header.Version}
	}
	var a defsAge
	for name, d := range s.DBs {
		if t := d.Header.Time; !t.IsZero() && (t.After(a.built) || (t.Equal(a.built) && name < a.from)) {
			a = defsAge{built: t, from: name, ver: d.Header.Version}
		}
	}
	return a
}

// staleLocked is which reasons hold at now. By age: no definitions at all,
// or built more than StaleAfter ago (a set whose build time is unknown is
// not judged by age). By mirror: the updater last confirmed the definitions
// current with a mirror more than StaleAfter ago (the time survives restarts
// in state_dir/last-success), or, with no record of that, the agent has run
// StaleAfter without confirming them.
func (u *Updater) staleLocked(now time.Time) staleReasons {
	var s staleReasons
	switch {
	case u.defs.none:
		s.age = true
	case !u.defs.built.IsZero():
		s.age = now.Sub(u.defs.built) > u.o.StaleAfter
	}
	if u.lastOK.IsZero() {
		s.mirror = now.Sub(u.started) > u.o.StaleAfter
	} else {
		s.mirror = now.Sub(u.lastOK) > u.o.StaleAfter
	}
	return s
}

// checkStale raises or resolves each reason's stale_definitions alert when
// it changes: one alert when it starts, one when it ends.
func (u *Updater) checkStale(ctx context.Context) {
	now := u.o.Now()
	u.mu.Lock()
	cur := u.staleLocked(now)
	prev := u.stale
	u.stale = cur
	last, defs, inst := u.lastOK, u.defs, clone(u.installed)
	u.mu.Unlock()
	u.o.Metrics.setStale(cur)
	base := report.Alert{Time: now, Name: report.AlertStaleDefinitions, DBVersions: inst, Threshold: u.o.StaleAfter}
	if cur.age != prev.age {
		a := base
		a.Reason = StaleAge
		if !defs.built.IsZero() {
			a.Age = now.Sub(defs.built)
		}
		built := ""
		if !defs.built.IsZero() {
			built = fmt.Sprintf("%s version %d, built %s", defs.from, defs.ver, defs.built.UTC().Format(time.RFC3339))
		}
		switch {
		case !cur.age:
			a.State = report.AlertResolved
			a.Message = "definitions are younger than stale_after again"
			if built != "" {
				a.Message += " (" + built + ")"
			}
		case defs.none:
			a.State = report.AlertFiring
			a.Message = "no definitions installed"
		default:
			a.State = report.AlertFiring
			a.Message = fmt.Sprintf("definitions are %s old (%s), more than stale_after %s; when this node is current with its mirror, the mirror has nothing newer: check its upstream sync, or import newer definitions into it",
				roundAge(a.Age), built, durString(u.o.StaleAfter))
		}
		u.emit(ctx, a)
	}
	if cur.mirror != prev.mirror {
		a := base
		a.Reason = StaleMirror
		if !last.IsZero() {
			a.Age = now.Sub(last)
		}
		switch {
		case !cur.mirror:
			a.State = report.AlertResolved
			a.Message = "definitions confirmed current with the mirror again"
		case last.IsZero():
			a.State = report.AlertFiring
			a.Message = fmt.Sprintf("no definitions confirmed current with a mirror since the agent started (stale_after %s)", durString(u.o.StaleAfter))
		default:
			a.State = report.AlertFiring
			a.Message = fmt.Sprintf("definitions last confirmed current %s ago (%s), more than stale_after %s; check the mirror and this node's connection to it",
				a.Age.Round(time.Second), last.UTC().Format(time.RFC3339), durString(u.o.StaleAfter))
		}
		u.emit(ctx, a)
	}
}

// durString writes a duration as in agent.yaml: "24h", not "24h0m0s".
func durString(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// roundAge shows an age to the unit that matters: days past two days.
func roundAge(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Second).String()
}
