package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
)

// Reloader holds the server's current certificate and client CA pool and
// replaces them when Reload is called. Handshakes in progress keep what they
// started with; the listener is never restarted.
type Reloader struct {
	certFile, keyFile, clientCAFile string
	base                            *tls.Config // NextProtos are read from it at handshake time
	cur                             atomic.Pointer[serverState]
}

type serverState struct {
	cert      *tls.Certificate
	cfg       *tls.Config // the per-handshake config handed out by GetConfigForClient
	clientCAs []*x509.Certificate
}

// ServerConfig returns the mirror's TLS configuration: TLS 1.2 or newer, the
// certificate from certFile/keyFile and, when clientCAFile is set, a client
// certificate chaining to it required on every connection (mutual TLS). An
// empty clientCAFile means server authentication only (legacy freshclam).
// Call the returned Reloader's Reload to re-read all three files.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, *Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, clientCAFile: clientCAFile}
	if err := r.Reload(); err != nil {
		return nil, nil, err
	}
	r.base = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		// The certificate and the client CA pool both come from the current
		// state, so a reload changes them together for new handshakes.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current(), nil
		},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cur.Load().cert, nil
		},
	}
	if clientCAFile != "" {
		r.base.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return r.base, r, nil
}

func (r *Reloader) current() *tls.Config {
	c := r.cur.Load().cfg.Clone()
	c.NextProtos = append([]string(nil), r.base.NextProtos...)
	return c
}

// Reload re-reads the certificate, its key and the client CA. On any error
// the previous certificate and pool stay in use and the error says which
// file was wrong.
func (r *Reloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load server certificate %s with key %s: %w", r.certFile, r.keyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	var clientCAs []*x509.Certificate
	if r.clientCAFile != "" {
		pool, cas, err := loadPool(r.clientCAFile)
		if err != nil {
			return fmt.Errorf("load client CA: %w", err)
		}
		clientCAs = cas
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	r.cur.Store(&serverState{cert: &cert, cfg: cfg, clientCAs: clientCAs})
	return nil
}

// Certificate is the server certificate in use (for expiry metrics and logs).
func (r *Reloader) Certificate() *x509.Certificate { return r.cur.Load().cert.Leaf }

// ClientCAs are the certificates of the client CA file in use (none without
// one), for expiry metrics and logs.
func (r *Reloader) ClientCAs() []*x509.Certificate { return r.cur.Load().clientCAs }

// ClientConfig returns an agent's TLS configuration: the mirror must present
// a certificate chaining to caFile, and the agent presents certFile/keyFile
// (both empty: no client certificate). An empty caFile uses the system roots.
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, _, err := loadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("load mirror CA: %w", err)
		}
		c.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("client certificate: cert and key must both be set or both be empty")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s with key %s: %w", certFile, keyFile, err)
		}
		// Always present the certificate, even when the server's list of
		// acceptable CAs does not name its issuer: the server then logs the
		// real reason ("signed by unknown authority") instead of "client
		// didn't provide a certificate", which sends operators the wrong way.
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		}
	}
	return c, nil
}

// loadPool reads every certificate of a PEM file; more than one is normal
// while a CA is being replaced.
func loadPool(path string) (*x509.CertPool, []*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parsePool(path, b)
}

func parsePool(path string, b []byte) (*x509.CertPool, []*x509.Certificate, error) {
	certs, err := parseCertificates(path, b)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, certs, nil
}

// ErrNoPeer is returned by PeerName when the connection carries no verified
// client certificate.
var ErrNoPeer = errors.New("no verified client certificate")

// PeerName returns the common name of the verified client certificate of a
// connection: the node's identity. Only a chain the server verified counts;
// an unverified certificate (a listener without client_ca) gives ErrNoPeer.
func PeerName(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", ErrNoPeer
	}
	cn := cs.VerifiedChains[0][0].Subject.CommonName
	if cn == "" {
		return "", fmt.Errorf("client certificate has an empty common name: %w", ErrNoPeer)
	}
	return cn, nil
}

// RequestPeerName is PeerName for an HTTP request.
func RequestPeerName(r *http.Request) (string, error) { return PeerName(r.TLS) }
