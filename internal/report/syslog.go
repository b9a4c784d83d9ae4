package report

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SyslogTarget is a parsed report.syslog URL.
type SyslogTarget struct {
	Network    string // udp | tcp | tls
	Addr       string // host:port
	Facility   Facility
	CAFile     string // tls: CA certificates that verify the server; empty = system roots
	CertFile   string // tls: client certificate, for servers that require one
	KeyFile    string
	ServerName string // tls: name the server certificate must carry; default the URL's host
}

// Default ports: 514/udp (RFC 5426), 601/tcp (syslog-conn), 6514 (RFC 5425).
var defaultSyslogPorts = map[string]string{"udp": "514", "tcp": "601", "tls": "6514"}

// ParseSyslogURL parses report.syslog: udp://host[:514], tcp://host[:601] or
// tls://host[:6514], with optional query parameters facility=NAME, and for
// tls ca=FILE, cert=FILE, key=FILE, server_name=NAME.
func ParseSyslogURL(raw string) (SyslogTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return SyslogTarget{}, fmt.Errorf("report.syslog %q: %w", raw, err)
	}
	t := SyslogTarget{Network: u.Scheme, Facility: FacilityDaemon}
	port, ok := defaultSyslogPorts[u.Scheme]
	if !ok {
		return SyslogTarget{}, fmt.Errorf("report.syslog %q: scheme must be udp://, tcp:// or tls://", raw)
	}
	if u.Hostname() == "" {
		return SyslogTarget{}, fmt.Errorf("report.syslog %q: no host", raw)
	}
	if u.Path != "" || u.User != nil || u.Fragment != "" {
		return SyslogTarget{}, fmt.Errorf("report.syslog %q: only scheme://host:port?options is allowed", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return SyslogTarget{}, fmt.Errorf("report.syslog %q: port %q is not 1..65535", raw, p)
		}
		port = p
	}
	t.Addr = net.JoinHostPort(u.Hostname(), port)
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "facility":
			if t.Facility, err = ParseFacility(v); err != nil {
				return SyslogTarget{}, fmt.Errorf("report.syslog %q: %w", raw, err)
			}
		case "ca", "cert", "key", "server_name":
			if t.Network != "tls" {
				return SyslogTarget{}, fmt.Errorf("report.syslog %q: option %s needs tls://", raw, k)
			}
			switch k {
			case "ca":
				t.CAFile = v
			case "cert":
				t.CertFile = v
			case "key":
				t.KeyFile = v
			case "server_name":
				t.ServerName = v
			}
		default:
			return SyslogTarget{}, fmt.Errorf("report.syslog %q: unknown option %q (known: facility, ca, cert, key, server_name)", raw, k)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return SyslogTarget{}, fmt.Errorf("report.syslog %q: cert and key must be given together", raw)
	}
	return t, nil
}

func (t SyslogTarget) String() string { return t.Network + "://" + t.Addr }

// SyslogOptions tune the client; zero values take the defaults shown.
type SyslogOptions struct {
	Hostname       string        // HOSTNAME for events without a node; os.Hostname()
	QueueSize      int           // messages held while the server is slow or down; 4096
	MaxMessageSize int           // bytes per message, framing excluded; 8000 (rsyslog accepts 8096 by default)
	FlushTimeout   time.Duration // how long Close and a cancelled Run keep sending what is queued; 5s
	DialTimeout    time.Duration // 10s
	WriteTimeout   time.Duration // per message; 10s
	MaxBackoff     time.Duration // longest wait between reconnects; 30s
	Logger         *slog.Logger  // outages and recoveries; nil = discard
	// Registerer, if set, gets avfleet_agent_syslog_* metrics (sent, dropped, queued, connected).
	Registerer prometheus.Registerer
}

// SyslogStats are the client's counters since it was made.
type SyslogStats struct {
	Sent      int64 // messages written to the transport
	Dropped   int64 // messages lost: queue full, UDP write failed twice, or still queued at shutdown
	Queued    int   // messages waiting now
	Connects  int64 // successful connections (for udp: sockets opened)
	Connected bool
	LastError string
}

// Syslog sends events as RFC 5424 messages. Report never blocks: it formats
// the event and puts it in a bounded queue, dropping (and counting) it when
// the queue is full, so a slow or dead syslog server cannot stall a scan. Run
// does the sending and reconnects with backoff; TCP and TLS use RFC 5425
// octet-counting framing, UDP one message per datagram (RFC 5426).
//
// TCP delivery is at-least-once: a message whose write failed is sent again on
// the next connection, so a receiver may see it twice; the meta sequenceId
// tells duplicates and gaps apart.
type Syslog struct {
	target SyslogTarget
	opts   SyslogOptions
	tlsCfg *tls.Config
	fmt    formatter
	log    *slog.Logger

	queue chan []byte
	seq   atomic.Uint32

	mu      sync.RWMutex // guards state against Report's enqueue
	state   int          // idle, running, stopped
	stop    chan struct{}
	stopped sync.Once
	done    chan struct{}

	sent, dropped, connects atomic.Int64
	connected               atomic.Bool
	lastErr                 atomic.Value // string
	fullWarned              atomic.Bool  // "queue full" logged; reset once it drains

	// owned by the Run goroutine
	conn         *syslogConn
	backoff      time.Duration
	down         bool
	downSince    time.Time
	droppedAtOut int64
}

const (
	stateIdle = iota
	stateRunning
	stateStopped
)

// NewSyslog checks target (and loads TLS files) without connecting; Run
// connects.
func NewSyslog(target SyslogTarget, opts SyslogOptions) (*Syslog, error) {
	if _, ok := defaultSyslogPorts[target.Network]; !ok {
		return nil, fmt.Errorf("syslog: network %q is not udp, tcp or tls", target.Network)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 8000
	}
	if opts.MaxMessageSize < minMessageSize {
		return nil, fmt.Errorf("syslog: max message size %d is below RFC 5424's minimum of %d", opts.MaxMessageSize, minMessageSize)
	}
	if target.Network == "udp" && opts.MaxMessageSize > 65507 {
		return nil, fmt.Errorf("syslog: max message size %d does not fit a UDP datagram (65507)", opts.MaxMessageSize)
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 5 * time.Second
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Syslog{
		target: target,
		opts:   opts,
		fmt:    formatter{facility: target.Facility, hostname: opts.Hostname, procID: strconv.Itoa(os.Getpid()), maxSize: opts.MaxMessageSize},
		log:    log.With("syslog", target.String()),
		queue:  make(chan []byte, opts.QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.lastErr.Store("")
	if target.Network == "tls" {
		cfg, err := syslogTLSConfig(target)
		if err != nil {
			return nil, err
		}
		s.tlsCfg = cfg
	}
	if opts.Registerer != nil {
		if err := s.register(opts.Registerer); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func syslogTLSConfig(t SyslogTarget) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(t.Addr)
		cfg.ServerName = host
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("syslog tls: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("syslog tls: CA file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("syslog tls: load client certificate %s: %w", t.CertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (s *Syslog) register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "avfleet_agent_syslog_sent_total", Help: "Syslog messages written to the server.",
		}, func() float64 { return float64(s.sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "avfleet_agent_syslog_dropped_total", Help: "Syslog messages lost: queue full, undeliverable, or queued at shutdown.",
		}, func() float64 { return float64(s.dropped.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "avfleet_agent_syslog_queued", Help: "Syslog messages waiting to be sent.",
		}, func() float64 { return float64(len(s.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "avfleet_agent_syslog_connected", Help: "1 when the syslog connection is up.",
		}, func() float64 {
			if s.connected.Load() {
				return 1
			}
			return 0
		}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("syslog: register metrics: %w", err)
		}
	}
	return nil
}

// Report queues ev. It never blocks and never fails: a message that cannot
// be queued is counted in Stats().Dropped and logged once per outage.
func (s *Syslog) Report(_ context.Context, ev Event) error {
	msg := s.fmt.format(ev, s.nextSeq())
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state == stateStopped {
		s.dropped.Add(1)
		return nil
	}
	select {
	case s.queue <- msg:
	default:
		s.dropped.Add(1)
		if s.fullWarned.CompareAndSwap(false, true) {
			s.log.Warn("syslog queue is full, dropping messages until the server accepts them again", "queue", cap(s.queue))
		}
	}
	return nil
}

// nextSeq counts 1..2147483647 and wraps, as RFC 5424's sequenceId requires.
func (s *Syslog) nextSeq() uint32 {
	for {
		old := s.seq.Load()
		n := old + 1
		if n > 2147483647 {
			n = 1
		}
		if s.seq.CompareAndSwap(old, n) {
			return n
		}
	}
}

// Stats returns the counters.
func (s *Syslog) Stats() SyslogStats {
	return SyslogStats{
		Sent:      s.sent.Load(),
		Dropped:   s.dropped.Load(),
		Queued:    len(s.queue),
		Connects:  s.connects.Load(),
		Connected: s.connected.Load(),
		LastError: s.lastErr.Load().(string),
	}
}

// Run sends queued messages until ctx is cancelled or Close is called, then
// keeps sending what is queued for at most FlushTimeout and returns. Messages
// still queued then are counted as dropped. Run may be called once, and not
// after Close.
func (s *Syslog) Run(ctx context.Context) error {
	if !s.begin() {
		return errors.New("syslog: Run called twice or after Close")
	}
	defer close(s.done)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	var pending []byte
	for pending == nil {
		select {
		case <-ctx.Done():
		case msg := <-s.queue:
			if !s.deliver(ctx, msg) {
				pending = msg
			}
			continue
		}
		break
	}
	s.finish(pending)
	return nil
}

// begin claims the sending role, for Run or, if Run never started, Close.
func (s *Syslog) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateIdle {
		return false
	}
	s.state = stateRunning
	return true
}

// finish sends pending and the queue on a fresh FlushTimeout deadline, then
// stops: later Reports count as dropped.
func (s *Syslog) finish(pending []byte) {
	fctx, fcancel := context.WithTimeout(context.Background(), s.opts.FlushTimeout)
	defer fcancel()
	if pending != nil && !s.deliver(fctx, pending) {
		s.dropped.Add(1)
	}
flush:
	for fctx.Err() == nil {
		select {
		case msg := <-s.queue:
			if !s.deliver(fctx, msg) {
				s.dropped.Add(1)
			}
		default:
			break flush
		}
	}

	s.mu.Lock()
	s.state = stateStopped
	if n := len(s.queue); n > 0 {
		s.dropped.Add(int64(n))
		s.log.Warn("syslog: messages still queued at shutdown are lost", "dropped", n)
		for len(s.queue) > 0 {
			<-s.queue
		}
	}
	s.mu.Unlock()
	s.closeConn()
}

// Close stops Run and waits while it sends what is queued (at most
// FlushTimeout). If Run was never started, Close does that sending itself,
// so a short-lived command can Report and Close without running Run.
func (s *Syslog) Close() error {
	s.stopped.Do(func() { close(s.stop) })
	if s.begin() {
		defer close(s.done)
		s.finish(nil)
		return nil
	}
	// A write in progress can take WriteTimeout beyond the flush deadline.
	select {
	case <-s.done:
		return nil
	case <-time.After(s.opts.FlushTimeout + s.opts.WriteTimeout + time.Second):
		return fmt.Errorf("syslog %s: flush did not finish in time", s.target)
	}
}

// deliver writes msg, reconnecting with backoff until it succeeds or ctx is
// done (false: msg is not sent). A UDP message whose write fails twice is
// dropped instead, since a datagram that did not leave is not worth stalling
// the queue for.
func (s *Syslog) deliver(ctx context.Context, msg []byte) bool {
	for attempt := 0; ; attempt++ {
		if s.conn == nil {
			c, err := s.dial(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return false
				}
				s.failed("connect", err)
				if !s.sleep(ctx) {
					return false
				}
				continue
			}
			s.conn = c
			s.connects.Add(1)
			s.connected.Store(true)
		}
		err := s.conn.write(msg, s.opts.WriteTimeout)
		if err == nil {
			s.sent.Add(1)
			s.recovered()
			if s.fullWarned.Load() && len(s.queue) < cap(s.queue)/2 {
				s.fullWarned.Store(false)
			}
			return true
		}
		s.closeConn()
		s.failed("send", err)
		if s.target.Network == "udp" {
			if attempt >= 1 {
				s.dropped.Add(1)
				return true
			}
			continue
		}
		if !s.sleep(ctx) {
			return false
		}
	}
}

func (s *Syslog) failed(op string, err error) {
	s.lastErr.Store(op + ": " + err.Error())
	if !s.down {
		s.down = true
		s.downSince = time.Now()
		s.droppedAtOut = s.dropped.Load()
		s.log.Warn("syslog server unreachable, queueing messages and retrying with backoff",
			"op", op, "err", err, "queue", cap(s.queue))
	} else {
		s.log.Debug("syslog retry failed", "op", op, "err", err)
	}
}

func (s *Syslog) recovered() {
	s.backoff = 0
	if s.down {
		s.down = false
		s.log.Info("syslog server reachable again",
			"down_for", time.Since(s.downSince).Round(time.Millisecond).String(),
			"dropped_meanwhile", s.dropped.Load()-s.droppedAtOut)
	}
}

// sleep waits the next backoff step (500ms doubling to MaxBackoff, +-20%
// jitter so a fleet does not reconnect in step); false if ctx ended first.
func (s *Syslog) sleep(ctx context.Context) bool {
	if s.backoff == 0 {
		s.backoff = 500 * time.Millisecond
	} else {
		s.backoff = min(2*s.backoff, s.opts.MaxBackoff)
	}
	d := time.Duration(float64(s.backoff) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Syslog) closeConn() {
	if s.conn != nil {
		s.conn.c.Close()
		s.conn = nil
	}
	s.connected.Store(false)
}

func (s *Syslog) dial(ctx context.Context) (*syslogConn, error) {
	d := &net.Dialer{Timeout: s.opts.DialTimeout, KeepAlive: 30 * time.Second}
	var c net.Conn
	var err error
	switch s.target.Network {
	case "udp":
		c, err = d.DialContext(ctx, "udp", s.target.Addr)
	case "tcp":
		c, err = d.DialContext(ctx, "tcp", s.target.Addr)
	case "tls":
		td := &tls.Dialer{NetDialer: d, Config: s.tlsCfg}
		c, err = td.DialContext(ctx, "tcp", s.target.Addr)
	}
	if err != nil {
		return nil, err
	}
	sc := &syslogConn{c: c, framed: s.target.Network != "udp"}
	if sc.framed {
		// A syslog server never sends anything; a read that returns means the
		// peer closed or reset the connection. Without this, the first message
		// after a server restart would vanish into a dead socket's buffer.
		sc.dead = make(chan struct{})
		go func() {
			defer close(sc.dead)
			var b [64]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					sc.readErr = err
					return
				}
			}
		}()
	}
	if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().Version >= tls.VersionTLS13 {
		// In TLS 1.3 the client's handshake ends before the server has
		// checked the client certificate; a rejection arrives as an alert
		// afterwards. Waiting for it briefly turns a rejected certificate
		// into a connect error instead of silently lost messages.
		select {
		case <-sc.dead:
			c.Close()
			return nil, sc.readErr
		case <-time.After(tls13VerdictWait):
		case <-ctx.Done():
			c.Close()
			return nil, ctx.Err()
		}
	}
	return sc, nil
}

// tls13VerdictWait is how long a new TLS 1.3 connection waits for the
// server to reject the client certificate (one round trip is enough).
const tls13VerdictWait = 300 * time.Millisecond

type syslogConn struct {
	c       net.Conn
	framed  bool
	dead    chan struct{} // closed when the reader saw the connection end
	readErr error         // why; read only after dead is closed
	buf     []byte
}

func (sc *syslogConn) write(msg []byte, timeout time.Duration) error {
	if sc.dead != nil {
		select {
		case <-sc.dead:
			return fmt.Errorf("server closed the connection: %w", sc.readErr)
		default:
		}
	}
	b := msg
	if sc.framed {
		// RFC 5425 section 4.3: MSG-LEN SP SYSLOG-MSG.
		sc.buf = strconv.AppendInt(sc.buf[:0], int64(len(msg)), 10)
		sc.buf = append(append(sc.buf, ' '), msg...)
		b = sc.buf
	}
	if err := sc.c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	n, err := sc.c.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return err
}
