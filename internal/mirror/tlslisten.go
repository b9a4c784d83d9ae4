package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// handshakeListener completes the TLS handshake of every connection before
// handing it to net/http, each in its own goroutine. net/http would do the
// handshake itself but only log failures; here every refused client (no
// certificate, another CA, expired, wrong key usage) is counted by reason.
// The connection handed on is a *tls.Conn, so r.TLS and HTTP/2 work as usual.
type handshakeListener struct {
	net.Listener
	cfg     *tls.Config
	onFail  func(reason string, remote net.Addr, err error)
	timeout time.Duration

	conns     chan net.Conn
	errs      chan error
	done      chan struct{}
	closeOnce sync.Once
}

func newHandshakeListener(raw net.Listener, cfg *tls.Config, onFail func(string, net.Addr, error)) *handshakeListener {
	l := &handshakeListener{Listener: raw, cfg: cfg, onFail: onFail, timeout: 10 * time.Second,
		conns: make(chan net.Conn), errs: make(chan error, 1), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *handshakeListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.errs <- err
				return
			}
			// EMFILE and friends: back off like net/http does, keep serving.
			select {
			case <-l.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		go l.handshake(c)
	}
}

func (l *handshakeListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if l.onFail != nil {
			l.onFail(handshakeFailureReason(err), c.RemoteAddr(), err)
		}
		tc.Close()
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		tc.Close()
	}
}

func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handshakeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// handshakeFailureReason classifies a failed server handshake for metrics.
// The texts are crypto/tls's and crypto/x509's; anything unknown is "other".
func handshakeFailureReason(err error) string {
	var ce x509.CertificateInvalidError
	s := err.Error()
	switch {
	case strings.Contains(s, "didn't provide a certificate"):
		return "no_certificate"
	case strings.Contains(s, "signed by unknown authority"):
		return "unknown_ca"
	case strings.Contains(s, "expired or is not yet valid"):
		return "expired"
	case strings.Contains(s, "incompatible key usage"):
		return "bad_key_usage"
	case errors.As(err, &ce):
		return "bad_certificate"
	case strings.Contains(s, "protocol version") || strings.Contains(s, "unsupported versions"):
		return "protocol_version"
	case strings.Contains(s, "remote error"), strings.Contains(s, "bad record MAC"):
		// The client refused us, usually because it does not trust our CA.
		// OpenSSL clients (curl, freshclam) show up as "bad record MAC".
		return "client_alert"
	case errors.Is(err, io.EOF) || strings.Contains(s, "connection reset"):
		return "eof"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case strings.Contains(s, "first record does not look like a TLS handshake"):
		return "not_tls"
	}
	return "other"
}
