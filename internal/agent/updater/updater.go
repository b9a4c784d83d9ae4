package updater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/avfleet/avfleet/internal/cvd"
	"github.com/avfleet/avfleet/internal/fsutil"
	"github.com/avfleet/avfleet/internal/report"
)

// Options configure an Updater.
type Options struct {
	Clients   []*Client // one per mirror URL, tried in order
	Store     *Store
	Verifier  Verifier
	Reloader  Reloader // nil: NoReload
	Allowlist Allowlist
	// FetchSign downloads the ClamAV 1.5 .sign file beside each database and
	// cdiff. Only useful when the verifier checks them (trust.sign_certs_dir):
	// otherwise they are passed over unchecked, and they are larger than a
	// typical cdiff.
	FetchSign bool
	// ChecksPerDay polls the manifest this often (jittered) besides the watch.
	ChecksPerDay int
	// PollInterval overrides 24h/ChecksPerDay (tests, benchmarks).
	PollInterval time.Duration
	// StaleAfter: definitions built longer ago than this, or not confirmed
	// current with a mirror for this long, raise the stale_definitions alert
	// (see stale.go).
	StaleAfter time.Duration
	// BackoffMin and BackoffMax bound the retry delay while the mirror is
	// unreachable or a cycle fails (0: 5 s and 10 min).
	BackoffMin, BackoffMax time.Duration
	// Events receives an UpdateEvent after every cycle and stale alerts
	// (the daemon's report.Reporter, which logs them and reports to the
	// mirror). Nil: events are only logged.
	Events  EventSink
	Metrics *Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// EventSink receives update events and alerts; report.Reporter is one.
type EventSink interface {
	Report(ctx context.Context, ev report.Event) error
}

// Updater runs update cycles, on demand (Cycle) or as a daemon part (Run).
type Updater struct {
	o   Options
	log *slog.Logger

	mu        sync.Mutex
	reloader  Reloader
	etag      string // manifest etag of the last successful cycle
	lastOK    time.Time
	lastErr   string
	installed map[string]uint
	defs      defsAge      // when the installed definitions were built
	stale     staleReasons // the alerts raised, by reason
	started   time.Time
	kick      chan struct{} // Trigger
}

// New returns an Updater. It reads the installed set and when it was last
// confirmed current, so metrics and staleness are right from the start.
func New(o Options) (*Updater, error) {
	if len(o.Clients) == 0 {
		return nil, errors.New("updater: no mirror URL")
	}
	if o.Store == nil || o.Verifier == nil {
		return nil, errors.New("updater: Store and Verifier are required")
	}
	if o.ChecksPerDay <= 0 {
		o.ChecksPerDay = 12
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 24 * time.Hour
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 5 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 10 * time.Minute
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if _, _, err := o.Allowlist.files(); err != nil {
		return nil, err
	}
	u := &Updater{o: o, log: o.Logger, reloader: o.Reloader, started: o.Now(), kick: make(chan struct{}, 1)}
	if u.reloader == nil {
		u.reloader = NoReload{}
	}
	cur, err := o.Store.Current()
	if err != nil {
		return nil, err
	}
	u.installed = cur.Versions()
	u.defs = definitionsAge(cur)
	o.Metrics.setInstalled(cur)
	u.lastOK = o.Store.lastSuccess()
	return u, nil
}

// SetAllowlist replaces the allowlist (a configuration reload); the next
// cycle installs a set with the new allowlist files. Call Trigger to run
// that cycle now.
func (u *Updater) SetAllowlist(a Allowlist) error {
	if _, _, err := a.files(); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.o.Allowlist = a
	return nil
}

// Trigger makes Run start a cycle now (a no-op when one is already due).
func (u *Updater) Trigger() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// SetReloader changes how clamd is told about a new set: the daemon installs
// the first set with NoReload, before clamd exists, then switches.
func (u *Updater) SetReloader(r Reloader) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reloader = r
}

// Status is what the updater knows, for the node report and `agent update`.
type Status struct {
	Installed   map[string]uint // versions of the set clamd was last confirmed to run
	LastSuccess time.Time       // last cycle that ended with the newest definitions installed
	LastError   string          // "" when the last cycle succeeded
	// BuiltAt is when the installed definitions were built (daily's build
	// time, else the newest database's; see definitionsAge), zero if unknown.
	BuiltAt time.Time
	// Stale is true while the stale_definitions alert fires, for any
	// reason: StaleAge (definitions older than StaleAfter) or StaleMirror
	// (not confirmed current with a mirror within StaleAfter).
	Stale        bool
	StaleReasons []string
}

func (u *Updater) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Status{Installed: clone(u.installed), LastSuccess: u.lastOK, LastError: u.lastErr, BuiltAt: u.defs.built,
		Stale: u.stale.any(), StaleReasons: u.stale.list()}
}

func clone(m map[string]uint) map[string]uint {
	c := make(map[string]uint, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Result is what one cycle did.
type Result struct {
	Source  string            // mirror URL used
	Old     map[string]uint   // versions before
	New     map[string]uint   // versions after (= Old when nothing changed or it failed)
	Methods map[string]string // database -> "cdiff", "full" or "current"
	Updated bool              // a new set was installed and confirmed
	Bytes   int64             // downloaded
	Sigs    int               // signatures clamd reported loading (-1 unknown)
	ETag    string
}

// CycleError is a failed cycle: Reason is one of the Reason* constants.
type CycleError struct {
	Reason string
	Err    error
}

func (e *CycleError) Error() string { return e.Err.Error() }
func (e *CycleError) Unwrap() error { return e.Err }

func failf(reason string, format string, a ...any) error {
	return &CycleError{Reason: reason, Err: fmt.Errorf(format, a...)}
}

func reasonOf(err error) string {
	var ce *CycleError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	switch {
	case isUnreachable(err):
		return ReasonUnreachable
	case cvd.CheckOf(err) != "":
		return ReasonVerify
	}
	var ck *checksumError
	if errors.As(err, &ck) {
		return ReasonChecksum
	}
	return ReasonMirror
}

// Cycle runs one update now: manifest, downloads, verification, install,
// reload. It reports the outcome as an UpdateEvent and returns it.
func (u *Updater) Cycle(ctx context.Context) (*Result, error) {
	return u.run(ctx, nil, nil)
}

func (u *Updater) run(ctx context.Context, m *Manifest, src *Client) (*Result, error) {
	start := u.o.Now()
	res, err := u.cycle(ctx, m, src)
	end := u.o.Now()
	if ctx.Err() != nil && err != nil {
		return res, err // shutting down: not a failure worth an event
	}
	u.mu.Lock()
	ev := report.UpdateEvent{Time: end, Source: res.Source, OldVersions: res.Old, NewVersions: res.New,
		Bytes: res.Bytes, Duration: end.Sub(start)}
	if res.Updated {
		// Installed and confirmed, even when another database failed.
		u.installed = clone(res.New)
	}
	if err != nil {
		u.lastErr = oneLineN(err.Error(), 2000)
		ev.Result, ev.Error = report.UpdateFailed, u.lastErr
		ev.NewVersions = clone(u.installed)
		u.o.Metrics.attempt(end, false, reasonOf(err))
	} else {
		u.lastErr = ""
		u.lastOK = end
		u.etag = res.ETag
		u.installed = clone(res.New)
		ev.Result = report.UpdateCurrent
		if res.Updated {
			ev.Result = report.UpdateUpdated
		}
		u.o.Metrics.attempt(end, true, "")
		if werr := u.o.Store.setLastSuccess(end); werr != nil {
			u.log.Warn("record last successful update", "err", werr)
		}
	}
	ev.Stale = u.staleLocked(end).any()
	u.mu.Unlock()
	u.emit(ctx, ev)
	u.checkStale(ctx)
	return res, err
}

func (u *Updater) emit(ctx context.Context, ev report.Event) {
	if u.o.Events != nil {
		_ = u.o.Events.Report(ctx, ev) // the Reporter logs sink failures itself
		return
	}
	switch e := ev.(type) {
	case report.UpdateEvent:
		if e.Result == report.UpdateFailed {
			u.log.Error("definitions update failed", "err", e.Error)
		} else {
			u.log.Info("definitions update", "result", e.Result, "versions", e.NewVersions)
		}
	case report.Alert:
		u.log.Warn("alert", "name", e.Name, "reason", e.Reason, "state", e.State, "message", e.Message)
	}
}

func (u *Updater) cycle(ctx context.Context, m *Manifest, src *Client) (*Result, error) {
	res := &Result{Methods: map[string]string{}, Sigs: -1}
	unlock, err := u.o.Store.Lock(ctx)
	if err != nil {
		return res, failf(ReasonInstall, "%w", err)
	}
	defer unlock()
	cur, err := u.o.Store.Current()
	if err != nil {
		return res, failf(ReasonInstall, "%w", err)
	}
	res.Old, res.New = cur.Versions(), cur.Versions()
	if m == nil {
		m, src, err = u.manifest(ctx)
		if err != nil {
			return res, err
		}
	}
	res.Source, res.ETag = src.URL(), m.ETag
	if len(m.Databases) == 0 && cur == nil {
		return res, failf(ReasonMirror, "mirror %s serves no databases yet (import or sync some there first)", src.URL())
	}
	u.mu.Lock()
	allowlist := u.o.Allowlist
	u.mu.Unlock()
	ignore, allow, err := allowlist.files()
	if err != nil {
		return res, failf(ReasonInstall, "%w", err)
	}

	var fetch []*ManifestDB
	for i := range m.Databases {
		d := &m.Databases[i]
		var inst *Installed
		if cur != nil {
			inst = cur.DBs[d.Name]
		}
		switch {
		case inst == nil:
			fetch = append(fetch, d)
		case inst.Header.Version == d.Version:
			res.Methods[d.Name] = "current"
		case d.Version < inst.Header.Version && !d.RolledBack:
			// A mirror that goes backwards without saying it rolled back
			// is broken or lying; freshclam never downgrades either.
			u.log.Warn("mirror serves an older version without a rollback; keeping the installed one",
				"database", d.Name, "installed", inst.Header.Version, "mirror", d.Version, "mirror_url", src.URL())
			res.Methods[d.Name] = "current"
		default:
			fetch = append(fetch, d)
		}
	}
	if cur != nil {
		for name, inst := range cur.DBs {
			if findDB(m, name) == nil {
				// Never reduce protection on the mirror's word: a database the
				// manifest stops listing (a half-imported mirror, a mistake)
				// stays installed at its version.
				u.log.Warn("database no longer on the mirror; keeping the installed version",
					"database", name, "version", inst.Header.Version, "mirror_url", src.URL())
			}
		}
	}
	if len(fetch) == 0 && cur != nil && bytes.Equal(ignore, cur.Ignore) && bytes.Equal(allow, cur.Allow) {
		return res, nil
	}

	b, err := u.o.Store.NewBuild()
	if err != nil {
		return res, failf(ReasonInstall, "%w", err)
	}
	committed := false
	defer func() {
		if !committed {
			b.Abort()
		}
		_ = emptyDir(u.o.Store.DownloadDir())
	}()
	// One database failing does not hold back the others: what verified is
	// installed, a database that failed stays at its installed version (or
	// is left out on a new node), and the cycle still counts as failed.
	fetched := map[string]bool{}
	var failed []error
	for _, d := range fetch {
		var inst *Installed
		if cur != nil {
			inst = cur.DBs[d.Name]
		}
		method, n, err := u.obtain(ctx, src, d, inst, b)
		res.Bytes += n
		if err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			failed = append(failed, err)
			continue
		}
		res.Methods[d.Name] = method
		fetched[d.Name] = true
	}
	partial := joinFailures(failed)
	if len(fetched) == 0 && (cur == nil || (bytes.Equal(ignore, cur.Ignore) && bytes.Equal(allow, cur.Allow))) {
		return res, partial
	}
	if cur != nil {
		for name, inst := range cur.DBs {
			if !fetched[name] {
				if err := b.Link(inst.File, filepath.Base(inst.File)); err != nil {
					return res, failf(ReasonInstall, "%w", err)
				}
			}
		}
	}
	if ignore != nil {
		if err := b.WriteFile(IgnoreFile, ignore); err != nil {
			return res, failf(ReasonInstall, "%w", err)
		}
	}
	if allow != nil {
		if err := b.WriteFile(AllowFile, allow); err != nil {
			return res, failf(ReasonInstall, "%w", err)
		}
	}
	set, err := b.Commit()
	if err != nil {
		return res, failf(ReasonInstall, "%w", err)
	}
	committed = true
	if err := u.o.Store.markPending(set, cur, u.o.Now()); err != nil {
		return res, failf(ReasonInstall, "%w", err)
	}
	if err := u.o.Store.Activate(set); err != nil {
		return res, failf(ReasonInstall, "%w", err)
	}
	u.mu.Lock()
	reloader := u.reloader
	u.mu.Unlock()
	sigs, err := reloader.Reload(ctx, set.Versions())
	if err != nil {
		rerr := failf(ReasonReload, "clamd did not load the new set %s (%s): %w", set.Name, FormatVersions(set.Versions()), err)
		if cur != nil {
			if e := u.o.Store.Restore(cur); e != nil {
				return res, errors.Join(rerr, fmt.Errorf("put back set %s: %w", cur.Name, e))
			}
			// db names a set clamd ran before: nothing is unconfirmed.
			if e := u.o.Store.clearPending(); e != nil {
				u.log.Warn("clear the record of the unconfirmed set", "err", e)
			}
			// db names the old set again, so a clamd restart reads it; and
			// clamd itself goes back to it by a reload (or a restart, when
			// the failed reload left it without an engine).
			var e error
			if r, ok := reloader.(Restorer); ok {
				e = r.RestorePrevious(ctx, err, cur.Versions())
			} else {
				_, e = reloader.Reload(ctx, cur.Versions())
			}
			if e != nil {
				u.log.Warn("load the previous set again after a failed reload", "set", cur.Name, "err", e)
			}
			rerr = failf(ReasonReload, "%v; put back the previous set %s (%s)", rerr, cur.Name, FormatVersions(cur.Versions()))
		}
		if partial != nil {
			return res, &CycleError{Reason: ReasonReload, Err: errors.Join(rerr, partial)}
		}
		return res, rerr
	}
	if confirms(reloader) {
		if err := u.o.Store.clearPending(); err != nil {
			u.log.Warn("clear the record of the unconfirmed set", "err", err)
		}
	}
	res.Sigs = sigs
	res.New = set.Versions()
	res.Updated = true
	u.mu.Lock()
	u.defs = definitionsAge(set)
	u.mu.Unlock()
	u.o.Metrics.setInstalled(set)
	if u.o.Metrics != nil {
		u.o.Metrics.updates.Inc()
		if sigs >= 0 {
			u.o.Metrics.confirmedSigs.Set(float64(sigs))
		}
		if !m.PublishedAt.IsZero() {
			u.o.Metrics.propagationSecs.Observe(u.o.Now().Sub(m.PublishedAt).Seconds())
		}
	}
	if err := u.o.Store.GC(); err != nil {
		u.log.Warn("remove old definition sets", "err", err)
	}
	return res, partial
}

// joinFailures makes one error of the databases that failed, labelled with
// the most telling reason; nil when none did.
func joinFailures(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return pickReason(errors.Join(errs...), errs)
}

// manifest asks each mirror URL in turn.
func (u *Updater) manifest(ctx context.Context) (*Manifest, *Client, error) {
	var errs []error
	for _, c := range u.o.Clients {
		m, err := c.Manifest(ctx, "")
		if err == nil {
			return m, c, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		errs = append(errs, err)
		u.log.Debug("mirror did not answer", "mirror_url", c.URL(), "err", err)
	}
	err := errors.Join(errs...)
	reason := ReasonMirror
	for _, e := range errs {
		if isUnreachable(e) {
			reason = ReasonUnreachable
		}
	}
	return nil, nil, &CycleError{Reason: reason, Err: fmt.Errorf("get manifest: %s", strings.ReplaceAll(err.Error(), "\n", "; "))}
}

// obtain gets database d into the build, verified: by the cdiff chain from
// the installed version when the mirror has it, else the file at d.Path,
// else the newest full database and the cdiffs after it.
func (u *Updater) obtain(ctx context.Context, src *Client, d *ManifestDB, inst *Installed, b *Build) (method string, n int64, err error) {
	var errs []error
	if inst != nil && inst.Kind != cvd.KindCUD {
		if chain := cdiffChain(d, inst.Header.Version); chain != nil {
			k, err := u.patch(ctx, src, d, inst.File, chain, b)
			n += k
			if err == nil {
				return "cdiff", n, nil
			}
			if ctx.Err() != nil {
				return "", n, err
			}
			u.log.Warn("cdiff update failed; trying the full database", "database", d.Name, "err", err)
			errs = append(errs, err)
		}
	}
	k, err := u.full(ctx, src, d, d.Path, d.Size, d.SHA256, d.SignPath, b)
	n += k
	if err == nil {
		return "full", n, nil
	}
	errs = append(errs, err)
	if ctx.Err() == nil && d.FullPath != "" && d.FullPath != d.Path && d.FullVersion < d.Version {
		// The mirror-built CLD was refused (for example: require_sign and a
		// CLD has no .sign); build it here from the signed full CVD.
		if chain := cdiffChain(d, d.FullVersion); chain != nil {
			u.log.Warn("database file refused; trying the full database and its cdiffs", "database", d.Name, "err", err)
			k, err := u.fullThenPatch(ctx, src, d, chain, b)
			n += k
			if err == nil {
				return "full", n, nil
			}
			errs = append(errs, err)
		}
	}
	return "", n, pickReason(fmt.Errorf("database %s version %d: %w", d.Name, d.Version, errors.Join(errs...)), errs)
}

// pickReason labels a failure that combines several attempts by the most
// telling one: a verification failure beats a checksum mismatch beats the rest.
func pickReason(err error, errs []error) error {
	best := ""
	rank := map[string]int{ReasonVerify: 4, ReasonChecksum: 3, ReasonUnreachable: 2, ReasonInstall: 1}
	for _, e := range errs {
		if r := reasonOf(e); best == "" || rank[r] > rank[best] {
			best = r
		}
	}
	return &CycleError{Reason: best, Err: errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))}
}

// download fetches one file (and its .sign) into the download directory.
func (u *Updater) download(ctx context.Context, src *Client, path string, size int64, sum, signPath, local, kind string) (string, int64, error) {
	dst := filepath.Join(u.o.Store.DownloadDir(), local)
	n, err := src.Fetch(ctx, path, dst, size, sum)
	u.o.Metrics.download(kind, n)
	if err != nil {
		return "", n, err
	}
	if signPath != "" && u.o.FetchSign {
		k, err := src.Fetch(ctx, signPath, dst+".sign", -1, "")
		u.o.Metrics.download("sign", k)
		n += k
		if err != nil {
			return "", n, err
		}
	}
	return dst, n, nil
}

func (u *Updater) patch(ctx context.Context, src *Client, d *ManifestDB, base string, chain []CDiffFile, b *Build) (int64, error) {
	var n int64
	files := make([]string, 0, len(chain))
	for _, c := range chain {
		p, k, err := u.download(ctx, src, c.Path, c.Size, c.SHA256, c.SignPath, fmt.Sprintf("%s-%d.cdiff", d.Name, c.Version), "cdiff")
		n += k
		if err != nil {
			return n, err
		}
		files = append(files, p)
	}
	out := filepath.Join(u.o.Store.DownloadDir(), d.Name+".cld")
	info, err := u.o.Verifier.Patch(base, files, out)
	if err != nil {
		return n, err
	}
	return n, u.place(d, out, info, b)
}

func (u *Updater) full(ctx context.Context, src *Client, d *ManifestDB, path string, size int64, sum, signPath string, b *Build) (int64, error) {
	local := d.Name + filepath.Ext(path)
	p, n, err := u.download(ctx, src, path, size, sum, signPath, local, "full")
	if err != nil {
		return n, err
	}
	info, err := u.o.Verifier.Verify(p)
	if err != nil {
		return n, err
	}
	return n, u.place(d, p, info, b)
}

func (u *Updater) fullThenPatch(ctx context.Context, src *Client, d *ManifestDB, chain []CDiffFile, b *Build) (int64, error) {
	p, n, err := u.download(ctx, src, d.FullPath, d.FullSize, d.FullSHA256, d.FullSignPath, "full-"+d.Name+filepath.Ext(d.FullPath), "full")
	if err != nil {
		return n, err
	}
	if _, err := u.o.Verifier.Verify(p); err != nil {
		return n, err
	}
	k, err := u.patch(ctx, src, d, p, chain, b)
	return n + k, err
}

// place checks that a verified file is the database and version the
// manifest promised, and puts it into the build under the name and kind
// clamd will accept.
func (u *Updater) place(d *ManifestDB, path string, info *cvd.Info, b *Build) error {
	if info.Header.Version != d.Version {
		return failf(ReasonVerify, "verify %s: version: the file is version %d, the manifest says %d", filepath.Base(path), info.Header.Version, d.Version)
	}
	if info.Name != "" && info.Name != d.Name && info.Name != strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) {
		return failf(ReasonVerify, "verify %s: name: the file is database %q, the manifest says %q", filepath.Base(path), info.Name, d.Name)
	}
	kind := info.Kind
	if kind != cvd.KindCVD && kind != cvd.KindCLD && kind != cvd.KindCUD {
		return failf(ReasonVerify, "verify %s: format: a %s is not an installable database", filepath.Base(path), kind)
	}
	if needsCUD(info) {
		dst := b.Path(d.Name + ".cud")
		if err := u.o.Verifier.Convert(path, dst, cvd.KindCUD); err != nil {
			return failf(ReasonInstall, "convert %s (signed by %s) to a CUD for clamd: %w", filepath.Base(path), info.SignedBy, err)
		}
		return nil
	}
	if err := b.Move(path, d.Name+"."+string(kind)); err != nil {
		return failf(ReasonInstall, "%w", err)
	}
	return nil
}

type watchMsg struct {
	m   *Manifest
	src *Client
}

// Run is the daemon part: a cycle now, then one on every watch event and
// every 24h/ChecksPerDay (jittered), retrying with backoff after failures.
func (u *Updater) Run(ctx context.Context) error {
	watchCh := make(chan watchMsg, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		u.watch(ctx, watchCh)
	}()
	defer wg.Wait()

	staleEvery := min(max(u.o.StaleAfter/20, time.Second), time.Minute)
	staleTick := time.NewTicker(staleEvery)
	defer staleTick.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-staleTick.C:
			u.checkStale(ctx)
			continue
		case w := <-watchCh:
			u.mu.Lock()
			same := w.m.ETag == u.etag && u.lastErr == ""
			u.mu.Unlock()
			if same {
				continue
			}
			_, err = u.run(ctx, w.m, w.src)
		case <-timer.C:
			_, err = u.run(ctx, nil, nil)
		case <-u.kick:
			_, err = u.run(ctx, nil, nil)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			d := u.backoff(failures)
			u.log.Info("next update attempt", "in", d.Round(time.Second), "failures", failures)
			resetTimer(timer, d)
		} else {
			failures = 0
			resetTimer(timer, u.pollInterval())
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}

// pollInterval is 24h/ChecksPerDay, ±20% so that a fleet started together
// does not poll together.
func (u *Updater) pollInterval() time.Duration {
	base := 24 * time.Hour / time.Duration(u.o.ChecksPerDay)
	if u.o.PollInterval > 0 {
		base = u.o.PollInterval
	}
	return time.Duration(float64(base) * (0.8 + 0.4*rand.Float64()))
}

// backoff doubles from BackoffMin up to BackoffMax, then takes a random
// point in the upper half, so a fleet cut off together does not return
// together.
func (u *Updater) backoff(n int) time.Duration {
	d := u.o.BackoffMin
	for i := 1; i < n && d < u.o.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, u.o.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// watch keeps one /api/v1/watch outstanding and hands every new manifest to
// Run; after an error it asks without an etag, which the mirror answers at
// once, so an update missed while the mirror was away is seen on return.
func (u *Updater) watch(ctx context.Context, ch chan watchMsg) {
	etag, fails, idx := "", 0, 0
	for ctx.Err() == nil {
		c := u.o.Clients[idx]
		m, retry, err := c.Watch(ctx, etag)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fails++
			if fails == 1 {
				u.log.Warn("watch for new definitions failed; polling and retrying", "mirror_url", c.URL(), "err", err)
			} else {
				u.log.Debug("watch failed", "mirror_url", c.URL(), "err", err)
			}
			idx = (idx + 1) % len(u.o.Clients)
			etag = ""
			d := retry
			if d == 0 {
				d = u.backoff(fails)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		if fails > 0 {
			u.log.Info("watch for new definitions restored", "mirror_url", c.URL())
		}
		fails = 0
		if m == nil {
			continue
		}
		etag = m.ETag
		select { // keep only the newest
		case <-ch:
		default:
		}
		ch <- watchMsg{m: m, src: c}
	}
}

// FormatVersions renders {"main":62,"daily":27480} as "daily 27480, main 62" ("none" when empty).
func FormatVersions(v map[string]uint) string {
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, v[n]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// lastSuccess reads when a cycle last succeeded (state_dir/last-success), so
// that staleness survives restarts.
func (s *Store) lastSuccess() time.Time {
	b, err := os.ReadFile(s.path(lastSuccessFile))
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}
	}
	return t
}

// lastSuccessFile in state_dir holds the time of the last successful
// update, so the stale alert survives a restart.
const lastSuccessFile = "last-success"

func (s *Store) setLastSuccess(t time.Time) error {
	return fsutil.WriteFile(s.path(lastSuccessFile), []byte(t.UTC().Format(time.RFC3339Nano)+"\n"), 0o644)
}
