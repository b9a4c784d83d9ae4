package updater

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/version"
)

// Client talks to one mirror over mutual TLS. It is safe for concurrent use:
// the watch runs beside update cycles and reports.
type Client struct {
	base    *url.URL
	http    *http.Client
	timeout time.Duration // per request, except the watch's long poll
}

// NewClient returns a client for the mirror at baseURL ("https://host:6501").
// tlsConf carries the agent's client certificate and the CA the mirror's
// certificate must chain to (tlsutil.ClientConfig).
func NewClient(baseURL string, tlsConf *tls.Config, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("mirror URL %q: want https://host:port", baseURL)
	}
	tr := &http.Transport{
		Proxy:               nil, // the mirror is on the fleet's own network; HTTPS_PROXY is for the internet
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: timeout,
		// HTTP/1.1: a refused client certificate then surfaces as the TLS
		// alert ("certificate required") instead of HTTP/2's "client conn
		// could not be established"; the agent needs no multiplexing.
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{base: u, http: &http.Client{Transport: tr}, timeout: timeout}, nil
}

// URL is the mirror's base URL, for messages and reports.
func (c *Client) URL() string { return c.base.String() }

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// unreachableError marks failures to talk to the mirror at all (connection,
// TLS, timeout, 5xx): the updater backs off on them. Other errors (a 404 for
// a file the manifest named, a checksum mismatch) are the mirror's content.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func isUnreachable(err error) bool {
	var u *unreachableError
	return errors.As(err, &u)
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	u := *c.base
	p, q, _ := strings.Cut(path, "?")
	u.Path = c.base.Path + p
	u.RawQuery = q
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", version.UserAgent())
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if req.Context().Err() != nil && errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, &unreachableError{fmt.Errorf("%s %s: %w", req.Method, req.URL, explainTLS(err))}
	}
	return resp, nil
}

// explainTLS turns the TLS errors operators meet into one line saying what to
// check; everything else is passed through.
func explainTLS(err error) error {
	var cvErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cvErr):
		return fmt.Errorf("the mirror's certificate does not verify against mirror.ca: %w", err)
	case strings.Contains(err.Error(), "remote error: tls: "):
		return fmt.Errorf("the mirror refused this node's client certificate (mirror.cert must be issued by the mirror's tls.client_ca and not expired): %w", err)
	}
	return err
}

// statusError is an HTTP answer the client did not expect.
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	err := fmt.Errorf("%s %s: HTTP %s: %s", resp.Request.Method, resp.Request.URL, resp.Status, oneLine(msg))
	if resp.StatusCode >= 500 {
		return &unreachableError{err}
	}
	return err
}

func oneLine(s string) string { return oneLineN(s, 200) }

// oneLineN folds s onto one line of at most n bytes.
func oneLineN(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// Manifest fetches the manifest. With etag set and unchanged, it returns
// (nil, nil).
func (c *Client) Manifest(ctx context.Context, etag string) (*Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/manifest", nil)
	if err != nil {
		return nil, err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", strconv.Quote(etag))
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		m, err := DecodeManifest(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", req.URL, err)
		}
		return m, nil
	case http.StatusNotModified:
		return nil, nil
	}
	return nil, statusError(resp)
}

// watchWait is how long the mirror holds a watch before answering 304.
const watchWait = 60 * time.Second

// Watch long-polls /api/v1/watch. It returns the new manifest when the
// mirror's differs from etag, (nil, 0, nil) when the mirror answered 304
// after its wait, or a retry delay when the mirror is shutting down (503).
func (c *Client) Watch(ctx context.Context, etag string) (*Manifest, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, watchWait+c.timeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/watch?version="+url.QueryEscape(etag), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		m, err := DecodeManifest(resp.Body)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", req.URL, err)
		}
		return m, 0, nil
	case http.StatusNotModified:
		return nil, 0, nil
	case http.StatusServiceUnavailable:
		d := 5 * time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 && s < 3600 {
			d = time.Duration(s) * time.Second
		}
		return nil, d, &unreachableError{fmt.Errorf("GET %s: mirror is shutting down (503)", req.URL)}
	}
	return nil, 0, statusError(resp)
}

// checksumError is a downloaded file that differs from what the manifest
// promised (size or SHA-256).
type checksumError struct{ msg string }

func (e *checksumError) Error() string { return e.msg }

// Fetch downloads path into dst (created, fsynced) and checks it has exactly
// size bytes with the given SHA-256 (size < 0: unknown, sum "": unchecked,
// for .sign files). It returns the bytes received.
func (c *Client) Fetch(ctx context.Context, path, dst string, size int64, sum string) (int64, error) {
	// A large CVD over a slow link takes longer than one request timeout;
	// scale it with the size (assume at least 1 MiB/s).
	timeout := c.timeout
	if size > 0 {
		timeout += time.Duration(size/(1<<20)) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, statusError(resp)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", path, err)
	}
	h := sha256.New()
	limit := int64(maxUnsizedBytes + 1)
	if size >= 0 {
		limit = size + 1 // one byte more shows a file longer than promised
	}
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, limit))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil || isNetErr(err) {
			return n, &unreachableError{fmt.Errorf("download %s%s: %w", c.base, path, err)}
		}
		return n, fmt.Errorf("download %s%s: %w", c.base, path, err)
	}
	if size >= 0 && n != size {
		return n, &checksumError{fmt.Sprintf("download %s%s: %d bytes, the manifest says %d", c.base, path, n, size)}
	}
	if size < 0 && n > maxUnsizedBytes {
		return n, fmt.Errorf("download %s%s: larger than %d bytes", c.base, path, maxUnsizedBytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && got != sum {
		return n, &checksumError{fmt.Sprintf("download %s%s: SHA-256 %s, the manifest says %s", c.base, path, got, sum)}
	}
	return n, nil
}

// maxUnsizedBytes bounds a file whose size the manifest does not give (a
// .sign file: a few KiB).
const maxUnsizedBytes = 1 << 20

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// PostReport sends the node's report (docs/api.md). The mirror answers 204.
func (c *Client) PostReport(ctx context.Context, node string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(node)+"/report", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return nil
}
