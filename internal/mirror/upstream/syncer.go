package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/version"
)

// DefaultMaxCDiffs is the longest cdiff chain fetched before the full CVD is
// taken instead. The mirror serves its newest retention.cdiffs (30) cdiffs
// anyway, and a chain that long is usually as large as the CVD.
const DefaultMaxCDiffs = 30

// Options configure a Syncer.
type Options struct {
	Config     config.Upstream
	Sink       Sink
	State      State
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics
	Resolver   Resolver              // nil: the system resolver
	RootCAs    *x509.CertPool        // nil: the system's roots
	MaxCDiffs  int                   // 0: DefaultMaxCDiffs
	// Interval is the time between checks before jitter; 0 means
	// 24 h / checks_per_day.
	Interval time.Duration
	Now      func() time.Time // nil: time.Now
}

// Syncer keeps the configured databases current from upstream.
type Syncer struct {
	cfg       config.Upstream
	urls      []string
	sink      Sink
	state     State
	log       *slog.Logger
	resolver  Resolver
	maxCDiffs int
	interval  time.Duration
	now       func() time.Time
	c         *client
	m         *metrics
}

// New checks the options and builds the HTTP client; nothing is asked of
// upstream until Run or SyncOnce.
func New(opt Options) (*Syncer, error) {
	cfg := opt.Config
	if opt.Sink == nil || opt.State == nil {
		return nil, errors.New("upstream sync: no store to write to")
	}
	if len(cfg.URLs) == 0 {
		return nil, errors.New("upstream.urls: at least one URL is needed for upstream sync")
	}
	if len(cfg.Databases) == 0 {
		return nil, errors.New("upstream.databases: at least one database is needed for upstream sync")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Resolver == nil {
		opt.Resolver = net.DefaultResolver
	}
	if opt.MaxCDiffs <= 0 {
		opt.MaxCDiffs = DefaultMaxCDiffs
	}
	if opt.Interval <= 0 {
		n := cfg.ChecksPerDay
		if n < 1 {
			n = 1
		}
		opt.Interval = 24 * time.Hour / time.Duration(n)
	}
	s := &Syncer{cfg: cfg, sink: opt.Sink, state: opt.State, log: opt.Logger.With("part", "upstream"),
		resolver: opt.Resolver, maxCDiffs: opt.MaxCDiffs, interval: opt.Interval, now: opt.Now}
	for _, u := range cfg.URLs {
		s.urls = append(s.urls, strings.TrimRight(u, "/"))
	}
	s.m = newMetrics(s.urls, s.now)
	if err := s.m.register(opt.Registerer); err != nil {
		return nil, fmt.Errorf("upstream sync: register metrics: %w", err)
	}
	c, err := newClient(cfg.Proxy, opt.RootCAs, cfg.Timeout.D(), version.UserAgent(), s.now, s.m)
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// Run checks upstream every Interval (±25 % jitter, so a fleet of mirrors
// does not ask at the same second) until ctx ends. The first check comes
// within 10 s of the start (spread a little, for mirrors restarted
// together); a cool-down in state.db is honoured by SyncOnce, which then
// asks nothing.
func (s *Syncer) Run(ctx context.Context) error {
	first := min(s.interval, 10*time.Second)
	t := time.NewTimer(time.Duration(rand.Int64N(int64(first)) + 1))
	defer t.Stop()
	s.log.Info("upstream sync started", "urls", s.urls, "databases", s.cfg.Databases, "interval", s.interval,
		"dns_txt", s.cfg.DNSTXT, "proxy", s.c.proxy)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("upstream sync", "err", err)
		}
		t.Reset(jitter(s.interval))
	}
}

// jitter spreads d over [0.75 d, 1.25 d).
func jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rand.Int64N(int64(d)/2+1))
}

// SyncOnce checks every configured database once, records each result in
// state.db and returns them. The error is about state.db only; upstream
// failures are results.
func (s *Syncer) SyncOnce(ctx context.Context) ([]SyncResult, error) {
	now := s.now()
	var urls []string
	var cooling []Cooldown
	for _, u := range s.urls {
		c, active, err := s.state.Cooldown(u, now)
		if err != nil {
			return nil, err
		}
		if active {
			cooling = append(cooling, c)
			s.m.cooldowns.set(u, c.Until)
			continue
		}
		s.m.cooldowns.set(u, time.Time{})
		urls = append(urls, u)
	}
	var info *updateInfo
	if len(urls) > 0 && s.cfg.DNSTXT != "" {
		info = s.lookupMain(ctx, now)
	}
	var out []SyncResult
	var errs []error
	for _, db := range s.cfg.Databases {
		if ctx.Err() != nil {
			break
		}
		var r SyncResult
		if len(urls) == 0 {
			r = SyncResult{Database: db, CheckedAt: now, Result: ResultCooldown, Error: cooldownText(cooling)}
			s.log.Debug("upstream on cool-down: not asked", "database", db, "until", r.Error)
		} else {
			r, urls, cooling = s.syncDB(ctx, db, urls, cooling, info)
		}
		s.m.checks.WithLabelValues(db, r.Result).Inc()
		if r.Result == ResultCurrent || r.Result == ResultUpdated {
			s.m.lastSuccess.WithLabelValues(db).Set(float64(r.CheckedAt.Unix()))
		}
		if r.UpstreamVersion > 0 {
			s.m.upstreamVersion.WithLabelValues(db).Set(float64(r.UpstreamVersion))
		}
		if err := s.state.SetSyncResult(r); err != nil {
			errs = append(errs, err)
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

func cooldownText(cs []Cooldown) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s on cool-down until %s (%s)", c.Scope, c.Until.UTC().Format(time.RFC3339), c.Reason))
	}
	return strings.Join(parts, "; ")
}

// lookupMain reads the main TXT record; nil when it cannot be used, and the
// header check decides instead.
func (s *Syncer) lookupMain(ctx context.Context, now time.Time) *updateInfo {
	recs, err := s.lookupTXT(ctx, s.cfg.DNSTXT)
	if err != nil {
		s.log.Warn("DNS TXT lookup failed; checking versions over HTTP instead", "name", s.cfg.DNSTXT, "err", err)
		return nil
	}
	var perr error
	for _, r := range recs {
		u, err := parseUpdateInfo(r)
		if err != nil {
			perr = err
			continue
		}
		if !fresh(u.recordTime, now) {
			s.log.Warn("DNS TXT record is older than 12 h; checking versions over HTTP instead", "name", s.cfg.DNSTXT,
				"record_time", u.recordTime)
			return nil
		}
		return &u
	}
	s.log.Warn("DNS TXT record unusable; checking versions over HTTP instead", "name", s.cfg.DNSTXT, "err", perr)
	return nil
}

func (s *Syncer) lookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.timeout)
	defer cancel()
	recs, err := s.resolver.LookupTXT(ctx, name)
	if err == nil && len(recs) == 0 {
		err = errors.New("no TXT record")
	}
	return recs, err
}

// dnsVersion is the version DNS advertises for db, 0 when DNS does not say
// (then the header check asks upstream).
func (s *Syncer) dnsVersion(ctx context.Context, db string, info *updateInfo, now time.Time) uint {
	if info == nil {
		return 0
	}
	if v, ok := info.version(db); ok {
		return v
	}
	if _, listed := mainRecordField[db]; listed {
		return 0
	}
	name := dbRecordName(s.cfg.DNSTXT, db)
	if name == "" {
		return 0
	}
	recs, err := s.lookupTXT(ctx, name)
	if err != nil {
		s.log.Debug("no per-database DNS TXT record; using the header check", "name", name, "err", err)
		return 0
	}
	for _, r := range recs {
		v, t, err := parseDBRecord(r)
		if err != nil {
			s.log.Warn("per-database DNS TXT record unusable; using the header check", "name", name, "err", err)
			return 0
		}
		if !fresh(t, now) {
			s.log.Warn("per-database DNS TXT record is older than 12 h; using the header check", "name", name, "record_time", t)
			return 0
		}
		return v
	}
	return 0
}

// syncDB brings db up to date from the first upstream URL that works. A URL
// that answers 429 or 403 is put on cool-down and dropped for the rest of
// this check.
func (s *Syncer) syncDB(ctx context.Context, db string, urls []string, cooling []Cooldown, info *updateInfo) (SyncResult, []string, []Cooldown) {
	now := s.now()
	r := SyncResult{Database: db, CheckedAt: now}
	start, err := s.sink.Held(db)
	if err != nil {
		r.Result, r.Error = ResultFailed, err.Error()
		return r, urls, cooling
	}
	dnsVer := s.dnsVersion(ctx, db, info, now)
	var errs []string
	allCooldown := true
	for i := 0; i < len(urls) && ctx.Err() == nil; {
		base := urls[i]
		held, err := s.sink.Held(db)
		if err != nil {
			r.Result, r.Error = ResultFailed, err.Error()
			return r, urls, cooling
		}
		o := s.syncFrom(ctx, base, db, held, dnsVer)
		if o.upstream > r.UpstreamVersion {
			r.UpstreamVersion = o.upstream
		}
		if o.err == nil {
			r.Result = ResultCurrent
			if o.reached > start.Version {
				r.Result = ResultUpdated
				s.log.Info("updated from upstream", "database", db, "from", start.Version, "to", o.reached, "upstream", base, "how", o.how)
			} else {
				s.log.Debug("upstream has nothing newer", "database", db, "version", held.Version, "upstream", base)
			}
			if len(errs) > 0 {
				r.Error = strings.Join(errs, "; ")
			}
			return r, urls, cooling
		}
		errs = append(errs, o.err.Error())
		var ce *cooldownError
		if errors.As(o.err, &ce) {
			c := Cooldown{Scope: base, Until: ce.Until, Reason: fmt.Sprintf("%d %s", ce.Code, ce.Reason)}
			if err := s.state.SetCooldown(c); err != nil {
				errs = append(errs, err.Error())
			}
			s.m.cooldowns.set(base, ce.Until)
			s.log.Warn("upstream asked us to wait: no request to it until the cool-down ends", "upstream", base,
				"code", ce.Code, "until", ce.Until.UTC().Format(time.RFC3339), "reason", ce.Reason)
			cooling = append(cooling, c)
			urls = append(urls[:i:i], urls[i+1:]...)
			continue
		}
		allCooldown = false
		s.log.Warn("upstream sync failed", "database", db, "upstream", base, "err", o.err)
		i++
	}
	held, _ := s.sink.Held(db)
	switch {
	case held.Version > start.Version:
		r.Result = ResultUpdated
	case allCooldown && len(errs) > 0:
		r.Result = ResultCooldown
	default:
		r.Result = ResultFailed
	}
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, "interrupted: "+ctx.Err().Error())
	}
	r.Error = strings.Join(errs, "; ")
	return r, urls, cooling
}

// outcome is what one upstream URL did for one database.
type outcome struct {
	upstream uint   // the version upstream advertised
	reached  uint   // the newest version held afterwards
	how      string // "cdiffs", "cvd", "cdiffs+cvd"
	err      error  // why it did not get to upstream (or failed)
}

// syncFrom is one database from one upstream URL: learn the version, then the
// cdiff chain, then the full CVD if the chain did not get there.
func (s *Syncer) syncFrom(ctx context.Context, base, db string, held Held, dnsVer uint) outcome {
	o := outcome{upstream: dnsVer, reached: held.Version}
	cvdSize := int64(-1)
	if o.upstream == 0 {
		hc, err := s.headerCheck(ctx, base, db, held)
		if err != nil {
			o.err = err
			return o
		}
		if hc.notModified {
			o.upstream = held.Version
			return o
		}
		o.upstream, cvdSize = hc.version, hc.size
	}
	if o.upstream <= held.Version {
		if o.upstream < held.Version {
			s.log.Info("upstream is behind the mirror; keeping what is verified", "database", db, "upstream", base,
				"upstream_version", o.upstream, "version", held.Version)
		}
		return o
	}

	var why, reason string
	switch {
	case held.Version == 0:
		why, reason = "no verified version yet", "initial"
	case o.upstream-held.Version > uint(s.maxCDiffs):
		why, reason = fmt.Sprintf("%d cdiffs would be needed, more than %d", o.upstream-held.Version, s.maxCDiffs), "chain_too_long"
	default:
		var fetched int64
	chain:
		for v := held.Version + 1; v <= o.upstream; v++ {
			name := fmt.Sprintf("%s-%d.cdiff", db, v)
			f, err := s.fetchIngest(ctx, base, name, "cdiff", nil, func([]byte) string { return name + ".sign" }, v)
			fetched += f.bytes
			var nf *notFoundError
			switch {
			case errors.As(err, &nf):
				why, reason = name+" is missing upstream", "missing_cdiff"
				break chain
			case err != nil:
				o.err = err
				return o
			}
			switch f.ing.Outcome {
			case Accepted, Ignored:
				o.reached, o.how = v, "cdiffs"
			default:
				why, reason = fmt.Sprintf("%s was rejected: %s", name, f.ing.Reason), "rejected_cdiff"
				break chain
			}
			if cvdSize > 0 && fetched > cvdSize && v < o.upstream {
				why, reason = fmt.Sprintf("the cdiffs up to %d are already larger than %s.cvd (%d bytes)", v, db, cvdSize), "chain_too_long"
				break chain
			}
		}
		if o.reached >= o.upstream {
			return o
		}
	}

	s.m.fallbacks.WithLabelValues(db, reason).Inc()
	if held.Version > 0 {
		s.log.Info("fetching the full CVD instead of cdiffs", "database", db, "upstream", base, "why", why)
	}
	h := http.Header{}
	if held.Version > 0 && !held.BuildTime.IsZero() {
		h.Set("If-Modified-Since", held.BuildTime.UTC().Format(http.TimeFormat))
	}
	cvdName := db + ".cvd"
	f, err := s.fetchIngest(ctx, base, cvdName, "cvd", h, func(hdr []byte) string {
		if v, ok := peekVersion(hdr); ok {
			return fmt.Sprintf("%s-%d.cvd.sign", db, v)
		}
		return ""
	}, 0)
	if err != nil {
		o.err = fmt.Errorf("%s; full %s: %w", why, cvdName, err)
		return o
	}
	if f.notModified {
		o.err = fmt.Errorf("%s; full %s: not modified since version %d, although version %d was advertised (upstream not in sync yet)", why, cvdName, held.Version, o.upstream)
		return o
	}
	switch f.ing.Outcome {
	case Accepted:
		if f.ing.Version > o.reached {
			o.reached = f.ing.Version
		}
		if o.how == "" {
			o.how = "cvd"
		} else {
			o.how += "+cvd"
		}
	case Rejected:
		o.err = fmt.Errorf("%s; full %s was rejected: %s", why, cvdName, f.ing.Reason)
		return o
	}
	if o.reached < o.upstream {
		o.err = fmt.Errorf("%s; full %s from %s is version %d, older than the advertised %d (upstream not in sync yet; the next check continues)",
			why, cvdName, base, f.ing.Version, o.upstream)
	}
	return o
}
