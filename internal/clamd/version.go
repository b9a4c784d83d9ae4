package clamd

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is clamd's answer to VERSION: "ClamAV 1.4.6/27500/Tue Dec 10
// 09:32:02 2024", or just "ClamAV 1.4.6" when no database named daily is
// loaded. The database part names only daily's version (clamd 1.4), so it
// cannot confirm which main, bytecode or custom databases are loaded.
type Version struct {
	Engine    string    // "1.4.6"
	Daily     int       // daily database version; 0 when none is loaded
	DailyTime time.Time // daily's build time, read in the local zone as clamd prints it; zero when none
	Raw       string    // the reply as received
}

func (v Version) String() string { return v.Raw }

// ParseVersion parses a VERSION reply.
func ParseVersion(s string) (Version, error) {
	v := Version{Raw: s}
	rest, ok := strings.CutPrefix(s, "ClamAV ")
	if !ok {
		return Version{}, fmt.Errorf("parse clamd version %q: does not start with \"ClamAV \"", s)
	}
	parts := strings.SplitN(rest, "/", 3)
	v.Engine = parts[0]
	if v.Engine == "" || strings.ContainsAny(v.Engine, " \t\n") {
		return Version{}, fmt.Errorf("parse clamd version %q: bad engine version %q", s, v.Engine)
	}
	if len(parts) == 1 {
		return v, nil
	}
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("parse clamd version %q: want ClamAV ENGINE/DAILY/DATE", s)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n <= 0 {
		return Version{}, fmt.Errorf("parse clamd version %q: bad daily version %q", s, parts[1])
	}
	v.Daily = n
	t, err := time.ParseInLocation(time.ANSIC, strings.TrimSpace(parts[2]), time.Local)
	if err != nil {
		return Version{}, fmt.Errorf("parse clamd version %q: bad daily date %q", s, parts[2])
	}
	v.DailyTime = t
	return v, nil
}
