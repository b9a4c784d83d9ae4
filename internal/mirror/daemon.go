package mirror

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/avfleet/avfleet/internal/config"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// DaemonOptions configure `avfleet mirror serve`.
type DaemonOptions struct {
	Config     *config.Mirror
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics
	Gatherer   prometheus.Gatherer   // what /metrics serves; nil: no /metrics
	Verifier   Verifier              // nil: NewVerifier(Config.Trust)

	// PollInterval is how often incoming/ and the verified link are looked
	// at (files dropped by hand, commands run beside the daemon). Default 1 s.
	PollInterval time.Duration
	// WatchTimeout is how long /api/v1/watch waits. Default 60 s.
	WatchTimeout time.Duration
}

// Daemon is the mirror daemon: the store, the HTTPS, plain and admin
// listeners, and the loops that pick up new files and new sets.
type Daemon struct {
	opt          DaemonOptions
	cfg          *config.Mirror
	log          *slog.Logger
	store        *Store
	bc           *broadcaster
	nodes        *nodeCache
	metrics      *metrics
	tlsReload    *tlsutil.Reloader
	watchTimeout time.Duration
	stopping     chan struct{}

	listeners  []namedListener
	servers    []*http.Server
	background []func(context.Context) error
}

// Go adds a part (upstream sync) that Run starts after the store is
// recovered and stops with the listeners. Call it before Run. A part that
// returns an error other than at shutdown stops the daemon.
func (d *Daemon) Go(part func(context.Context) error) { d.background = append(d.background, part) }

type namedListener struct {
	name string
	l    net.Listener
}

// NewDaemon opens the store, loads the TLS material and binds every
// listener, so that configuration and port errors surface before Run.
func NewDaemon(opt DaemonOptions) (*Daemon, error) {
	cfg := opt.Config
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = time.Second
	}
	if opt.WatchTimeout <= 0 {
		opt.WatchTimeout = 60 * time.Second
	}
	if opt.Verifier == nil {
		v, err := NewVerifier(cfg.Trust)
		if err != nil {
			return nil, err
		}
		opt.Verifier = v
	}
	d := &Daemon{opt: opt, cfg: cfg, log: opt.Logger, nodes: &nodeCache{}, watchTimeout: opt.WatchTimeout,
		stopping: make(chan struct{}), bc: newBroadcaster(emptySet())}
	if uid := foreignOwner(cfg.DataDir); uid >= 0 {
		d.log.Warn("the daemon runs as root on a data_dir that belongs to another user: files it creates will be root's, and the mirror run as that user (the systemd unit) will not be able to change them; run it as that user",
			"data_dir", cfg.DataDir, "owner_uid", uid)
	}
	store, err := Open(Options{DataDir: cfg.DataDir, Retention: cfg.Retention, Verifier: opt.Verifier, Logger: opt.Logger})
	if err != nil {
		return nil, err
	}
	d.store = store
	store.onPublish = func(s *servedSet) { d.bc.publish(s) }
	d.metrics = newMetrics(opt.Registerer, d)
	fail := func(err error) (*Daemon, error) {
		for _, l := range d.listeners {
			l.l.Close()
		}
		store.Close()
		return nil, err
	}
	recs, err := store.State().NodeReports()
	if err != nil {
		return fail(err)
	}
	for _, r := range recs {
		d.nodes.put(r)
	}
	if set, err := store.current(); err == nil {
		d.bc.publish(set)
	} else {
		d.log.Warn("published set unreadable; a new one is published on start", "err", err)
	}

	if cfg.Listen != "" {
		tcfg, reloader, err := tlsutil.ServerConfig(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA)
		if err != nil {
			return fail(fmt.Errorf("tls: %w", err))
		}
		// Every handshake is completed by handshakeListener before net/http
		// sees the connection; HTTP/2 stays available to clients that ask.
		d.tlsReload = reloader
		d.warnCertExpiry(time.Now())
		if cfg.TLS.ClientCA == "" {
			d.log.Warn("tls.client_ca is empty: any client can download, and node reports are refused")
		}
		raw, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fail(fmt.Errorf("listen %s: %w", cfg.Listen, err))
		}
		hl := newHandshakeListener(raw, tcfg, func(reason string, remote net.Addr, err error) {
			d.metrics.tlsFailures.WithLabelValues(reason).Inc()
			d.log.Debug("TLS handshake refused", "remote", remote.String(), "reason", reason, "err", err)
		})
		d.listeners = append(d.listeners, namedListener{"https", hl})
		d.servers = append(d.servers, d.newServer(d.publicHandler(false)))
	}
	if cfg.PlainListen != "" {
		l, err := net.Listen("tcp", cfg.PlainListen)
		if err != nil {
			return fail(fmt.Errorf("listen %s (plain_listen): %w", cfg.PlainListen, err))
		}
		d.listeners = append(d.listeners, namedListener{"plain", l})
		d.servers = append(d.servers, d.newServer(d.publicHandler(true)))
	}
	if cfg.AdminListen != "" {
		l, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fail(fmt.Errorf("listen %s (admin_listen): %w", cfg.AdminListen, err))
		}
		var mh http.Handler
		if opt.Gatherer != nil {
			mh = promhttp.HandlerFor(opt.Gatherer, promhttp.HandlerOpts{})
		}
		d.listeners = append(d.listeners, namedListener{"admin", l})
		d.servers = append(d.servers, d.newServer(d.adminHandler(mh)))
	}
	return d, nil
}

func (d *Daemon) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: database downloads and watches are long.
		ErrorLog: log.New(slogWriter{d.log}, "", 0),
	}
}

// slogWriter sends net/http's own error log lines to the daemon's logger.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("http server", "msg", string(p))
	return len(p), nil
}

// Addr returns the bound address of a listener ("https", "plain", "admin").
func (d *Daemon) Addr(name string) string {
	for _, l := range d.listeners {
		if l.name == name {
			return l.l.Addr().String()
		}
	}
	return ""
}

// Store is the daemon's store (upstream sync ingests through it).
func (d *Daemon) Store() *Store { return d.store }

// ReloadTLS re-reads the server certificate, key and client CA (SIGHUP). On
// error the old ones stay in use.
func (d *Daemon) ReloadTLS() error {
	if d.tlsReload == nil {
		return nil
	}
	if err := d.tlsReload.Reload(); err != nil {
		return err
	}
	d.log.Info("TLS certificates reloaded", "cert", d.cfg.TLS.Cert, "client_ca", d.cfg.TLS.ClientCA)
	d.warnCertExpiry(time.Now())
	return nil
}

// warnCertExpiry logs the server certificate and client CAs in use that
// have expired or end within tlsutil.ExpiryWarning.
func (d *Daemon) warnCertExpiry(now time.Time) {
	if d.tlsReload == nil {
		return
	}
	tlsutil.WarnExpiry(d.log, now, "tls.cert", d.cfg.TLS.Cert, d.tlsReload.Certificate())
	tlsutil.WarnExpiry(d.log, now, "tls.client_ca", d.cfg.TLS.ClientCA, d.tlsReload.ClientCAs()...)
}

// certExpiryLoop repeats the expiry warning once a day, so that a mirror
// that runs for months says so in its log when renewal comes due.
func (d *Daemon) certExpiryLoop(ctx context.Context) {
	t := time.NewTicker(24 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.warnCertExpiry(now)
		}
	}
}

// Run serves until ctx ends, then shuts down gracefully and returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.store.Close()
	// Recover and publish whatever a previous run left, before serving.
	if err := d.store.withLock(ctx, func(*locked) error { return nil }); err != nil {
		for _, l := range d.listeners {
			l.l.Close()
		}
		return fmt.Errorf("open mirror store %s: %w", d.cfg.DataDir, err)
	}
	d.refreshSet()

	var wg sync.WaitGroup
	errc := make(chan error, len(d.servers)+len(d.background)+2)
	for i, srv := range d.servers {
		l := d.listeners[i]
		d.log.Info("listening", "listener", l.name, "addr", l.l.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s on %s: %w", l.name, l.l.Addr(), err)
			}
		}()
	}
	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	wg.Add(3)
	go func() { defer wg.Done(); d.incomingLoop(loopCtx) }()
	go func() { defer wg.Done(); d.setLoop(loopCtx) }()
	go func() { defer wg.Done(); d.certExpiryLoop(loopCtx) }()
	for _, part := range d.background {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := part(loopCtx); err != nil && loopCtx.Err() == nil {
				errc <- err
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	d.log.Info("shutting down")
	close(d.stopping)
	stopLoops()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range d.servers {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}
	wg.Wait()
	return runErr
}

// incomingSettle is how long a file in incoming/ must be left unmodified
// before the daemon verifies it.
const incomingSettle = time.Second

// incomingLoop picks up files dropped into incoming/.
func (d *Daemon) incomingLoop(ctx context.Context) {
	t := time.NewTicker(d.opt.PollInterval)
	defer t.Stop()
	for {
		if _, err := d.store.processIncoming(ctx, incomingSettle); err != nil && ctx.Err() == nil {
			d.metrics.pipelineError.Inc()
			d.log.Error("processing incoming/", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setLoop notices sets published by other processes (import, hold, release,
// rollback run beside the daemon) by watching the verified link: at once
// through inotify where it works, and by looking at it every half
// PollInterval in any case.
func (d *Daemon) setLoop(ctx context.Context) {
	changed := watchName(ctx, d.cfg.DataDir, verifiedLink)
	if changed == nil {
		d.log.Debug("inotify unavailable: sets published by other processes are noticed by polling", "interval", d.opt.PollInterval/2)
	}
	t := time.NewTicker(d.opt.PollInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			d.refreshSet()
		case <-t.C:
			d.refreshSet()
		}
	}
}

func (d *Daemon) refreshSet() {
	cur := d.bc.load()
	target, err := os.Readlink(filepath.Join(d.cfg.DataDir, verifiedLink))
	if err != nil {
		return
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(d.cfg.DataDir, target)
	}
	if cur != nil && cur.dir == target {
		return
	}
	set, err := d.store.current()
	if err != nil {
		d.log.Error("reading the published set", "err", err)
		return
	}
	if d.bc.publish(set) {
		d.log.Info("serving verified set", "generation", set.index.Generation, "etag", set.manifest.ETag, "databases", len(set.manifest.Databases))
	}
}

// CheckTLS loads the TLS material of cfg the way serve would (for
// --check-config), and logs a warning on log for a certificate that has
// expired or ends within tlsutil.ExpiryWarning.
func CheckTLS(cfg *config.Mirror, log *slog.Logger) error {
	if cfg.Listen == "" {
		return nil
	}
	_, r, err := tlsutil.ServerConfig(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA)
	if err != nil {
		return err
	}
	(&Daemon{cfg: cfg, log: log, tlsReload: r}).warnCertExpiry(time.Now())
	return nil
}
