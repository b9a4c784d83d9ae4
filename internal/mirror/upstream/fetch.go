package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// defaultRetryAfter is the cool-down after a 429 without a usable
// Retry-After, and forbiddenCooldown the one after a 403 (freshclam's values).
const (
	defaultRetryAfter = 4 * time.Hour
	forbiddenCooldown = 24 * time.Hour
)

// maxRedirects follows what freshclam allows.
const maxRedirects = 3

// cooldownError is a 429 or 403: the upstream URL must not be asked again
// before Until.
type cooldownError struct {
	Base   string // the upstream URL (the cool-down's scope)
	URL    string // what was asked
	Code   int
	Until  time.Time
	Reason string
}

func (e *cooldownError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s; no request to %s before %s", e.URL, e.Code, http.StatusText(e.Code),
		e.Reason, e.Base, e.Until.UTC().Format(time.RFC3339))
}

// notFoundError is a 404: upstream does not have the file.
type notFoundError struct{ URL string }

func (e *notFoundError) Error() string { return e.URL + " answered 404 Not Found" }

// client is the HTTP side of sync: one transport (proxy, TLS roots,
// timeouts), the User-Agent, and the status codes every request treats alike.
type client struct {
	hc      *http.Client
	ua      string
	timeout time.Duration // connect, response header and download stall
	proxy   string        // redacted, for messages
	now     func() time.Time
	m       *metrics
}

func newClient(proxy string, roots *x509.CertPool, timeout time.Duration, ua string, now func() time.Time, m *metrics) (*client, error) {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	c := &client{ua: ua, timeout: timeout, now: now, m: m}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          4,
		ForceAttemptHTTP2:     true,
		// Byte ranges and If-Modified-Since are about the file as stored;
		// a transparently gunzipped body would not be it.
		DisableCompression: true,
	}
	if proxy != "" {
		u, err := url.Parse(proxy)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("upstream.proxy: %q is not a URL like http://user:pass@host:port", redact(proxy))
		}
		// The user and password in the URL become Proxy-Authorization: Basic
		// on CONNECT (https upstreams) and on forwarded requests (http).
		tr.Proxy = http.ProxyURL(u)
		c.proxy = u.Redacted()
	}
	c.hc = &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			return nil
		},
	}
	return c, nil
}

func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

// response is an answered request whose body stalls out after the timeout.
type response struct {
	*http.Response
	cancel context.CancelFunc
}

func (r *response) Close() {
	r.Body.Close()
	r.cancel()
}

// get asks for base/name. kind labels metrics ("header", "cvd", "cdiff",
// "sign"). 429 and 403 come back as *cooldownError, 404 as *notFoundError,
// 200, 206 and 304 as a response; anything else as an error naming the URL.
func (c *client) get(ctx context.Context, base, name, kind string, h http.Header) (*response, error) {
	u := strings.TrimRight(base, "/") + "/" + name
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("request %s: %w", u, err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", c.ua)
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		c.m.requests.WithLabelValues(kind, "error").Inc()
		return nil, c.transportError(u, err)
	}
	c.m.requests.WithLabelValues(kind, strconv.Itoa(resp.StatusCode)).Inc()
	body := &stallReader{r: resp.Body, timeout: c.timeout, cancel: cancel, count: c.m.bytes.WithLabelValues(kind).Add}
	body.arm()
	resp.Body = body
	r := &response{Response: resp, cancel: cancel}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent, http.StatusNotModified:
		return r, nil
	case http.StatusTooManyRequests:
		now := c.now()
		wait, how := retryAfter(resp.Header.Get("Retry-After"), now)
		r.Close()
		return nil, &cooldownError{Base: base, URL: u, Code: resp.StatusCode, Until: now.Add(wait), Reason: how}
	case http.StatusForbidden:
		r.Close()
		return nil, &cooldownError{Base: base, URL: u, Code: resp.StatusCode, Until: c.now().Add(forbiddenCooldown),
			Reason: "blocked by the upstream CDN (24 h cool-down, as freshclam)"}
	case http.StatusNotFound:
		r.Close()
		return nil, &notFoundError{URL: u}
	case http.StatusProxyAuthRequired:
		r.Close()
		return nil, fmt.Errorf("%s: proxy %s answered 407 Proxy Authentication Required: check the user and password in upstream.proxy", u, c.proxyName())
	}
	r.Close()
	return nil, fmt.Errorf("%s answered %s", u, resp.Status)
}

func (c *client) proxyName() string {
	if c.proxy == "" {
		return "(from HTTPS_PROXY/HTTP_PROXY)"
	}
	return c.proxy
}

// transportError names the proxy when the failure was talking to it.
func (c *client) transportError(u string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if strings.Contains(msg, "Proxy Authentication Required") {
		return fmt.Errorf("%s: proxy %s answered 407 Proxy Authentication Required: check the user and password in upstream.proxy", u, c.proxyName())
	}
	if strings.HasPrefix(msg, "proxyconnect") {
		return fmt.Errorf("%s: connecting to proxy %s: %w", u, c.proxyName(), err)
	}
	return fmt.Errorf("%s: %w", u, err)
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date. A
// missing, unparsable or non-positive value means freshclam's 4 hours. More
// than a year is taken as a year: a typo upstream must not silence the mirror
// for good.
func retryAfter(v string, now time.Time) (time.Duration, string) {
	const maxWait = 365 * 24 * time.Hour
	v = strings.TrimSpace(v)
	if v == "" {
		return defaultRetryAfter, "rate limited, no Retry-After: waiting 4 h as freshclam does"
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") {
		if err != nil || n > int64(maxWait/time.Second) {
			return maxWait, fmt.Sprintf("rate limited, Retry-After %q capped at a year", clip(v))
		}
		if n <= 0 {
			return defaultRetryAfter, fmt.Sprintf("rate limited, Retry-After %q is not positive: waiting 4 h", v)
		}
		return time.Duration(n) * time.Second, fmt.Sprintf("rate limited, Retry-After %d s", n)
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		switch {
		case d <= 0:
			return defaultRetryAfter, fmt.Sprintf("rate limited, Retry-After %q is in the past: waiting 4 h", v)
		case d > maxWait:
			return maxWait, fmt.Sprintf("rate limited, Retry-After %q capped at a year", v)
		}
		return d, "rate limited, Retry-After " + t.UTC().Format(time.RFC3339)
	}
	return defaultRetryAfter, fmt.Sprintf("rate limited, Retry-After %q is neither seconds nor a date: waiting 4 h", clip(v))
}

// stallReader cancels the request when no byte arrives for timeout: a large
// CVD may take long, but a connection that stopped moving is dead.
type stallReader struct {
	r       io.ReadCloser
	timeout time.Duration
	cancel  context.CancelFunc
	count   func(float64)

	mu      sync.Mutex
	timer   *time.Timer
	stalled atomic.Bool
}

func (s *stallReader) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = time.AfterFunc(s.timeout, func() {
		s.stalled.Store(true)
		s.cancel()
	})
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.stalled.Load() {
		err = fmt.Errorf("download stalled: no data for %s (upstream.timeout)", s.timeout)
	}
	if n > 0 {
		s.count(float64(n))
		s.mu.Lock()
		s.timer.Reset(s.timeout)
		s.mu.Unlock()
	}
	return n, err
}

func (s *stallReader) Close() error {
	s.mu.Lock()
	s.timer.Stop()
	s.mu.Unlock()
	return s.r.Close()
}
