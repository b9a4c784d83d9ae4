package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// File names inside a certificate directory. The mirror and agent configs
// name them the same way by default.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// DefaultDays is the validity of server and client certificates when none is
// given: 825 days is the longest that macOS and iOS accept for a TLS server
// certificate, and short enough that renewal stays a practised routine.
const DefaultDays = 825

// caDays is the CA's own validity. Leaf certificates never outlive it.
const caDays = 10 * 365

// DefaultHosts are the server certificate's names when no host is given: a
// mirror and agent on one machine (the demo, tests) work out of the box.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// KeyType selects the key algorithm of every key written.
type KeyType string

const (
	ECDSAP256 KeyType = "ecdsa" // default: small, fast, supported by every TLS 1.2+ stack
	RSA3072   KeyType = "rsa"   // for clients that cannot do ECDSA
)

// ErrExists is returned when a file would be replaced without Overwrite.
var ErrExists = errors.New("already exists and overwriting was not requested")

// Options tune Init, Issue and IssueServer. The zero value is the default.
type Options struct {
	Hosts     []string // server certificate SANs (IP or DNS name); default DefaultHosts
	Days      int      // leaf validity in days; default DefaultDays
	KeyType   KeyType  // default ECDSAP256
	Overwrite bool     // replace existing files (Init: the whole CA!)

	// Now issues as if at this time (zero: the current time): tests make
	// certificates that have expired or are about to.
	Now time.Time
}

func (o Options) clock() time.Time {
	if !o.Now.IsZero() {
		return o.Now
	}
	return time.Now()
}

func (o Options) days() int {
	if o.Days <= 0 {
		return DefaultDays
	}
	return o.Days
}

// Init creates a new fleet CA in dir with a server certificate for hosts and
// one client certificate per name in clients, all valid for days (0 = the
// default). It refuses to replace an existing CA; see InitWith.
func Init(dir string, hosts, clients []string, days int) error {
	return InitWith(dir, clients, Options{Hosts: hosts, Days: days})
}

// InitWith is Init with every option. Files are written atomically; keys are
// 0600. Nothing is written when any check fails, and the CA itself is written
// last, so an interrupted run never leaves a CA without its server certificate.
func InitWith(dir string, clients []string, o Options) error {
	if o.days() > caDays {
		return fmt.Errorf("certs init: %d days is longer than the CA's own %d days", o.Days, caDays)
	}
	hosts, err := parseHosts(o.Hosts)
	if err != nil {
		return fmt.Errorf("certs init: %w", err)
	}
	seen := map[string]bool{}
	for _, c := range clients {
		if err := ValidName(c); err != nil {
			return fmt.Errorf("certs init: %w", err)
		}
		if seen[c] {
			return fmt.Errorf("certs init: client %q given twice", c)
		}
		seen[c] = true
	}
	names := []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile}
	for _, c := range clients {
		names = append(names, c+".crt", c+".key")
	}
	if !o.Overwrite {
		for _, n := range names {
			if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
				return fmt.Errorf("certs init: %s: %w", filepath.Join(dir, n), ErrExists)
			}
		}
	}

	now := o.clock()
	caKey, err := newKey(o.KeyType)
	if err != nil {
		return fmt.Errorf("certs init: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return fmt.Errorf("certs init: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial,
		// The serial in the name tells two fleets' CAs apart in error messages.
		Subject:               pkix.Name{CommonName: "avfleet CA " + hex.EncodeToString(serial.Bytes()[:4]), Organization: []string{"avfleet"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:              now.AddDate(0, 0, caDays),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return fmt.Errorf("certs init: create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("certs init: parse CA certificate: %w", err)
	}

	var files []outFile
	add := func(base string, certPEM, keyPEM []byte) {
		files = append(files, outFile{base + ".crt", certPEM, 0o644}, outFile{base + ".key", keyPEM, 0o600})
	}
	certPEM, keyPEM, err := issue(ca, caKey, serverTemplate(hosts), o, now)
	if err != nil {
		return fmt.Errorf("certs init: server certificate: %w", err)
	}
	add("server", certPEM, keyPEM)
	for _, c := range clients {
		certPEM, keyPEM, err := issue(ca, caKey, clientTemplate(c), o, now)
		if err != nil {
			return fmt.Errorf("certs init: client %s: %w", c, err)
		}
		add(c, certPEM, keyPEM)
	}
	caKeyPEM, err := encodeKey(caKey)
	if err != nil {
		return fmt.Errorf("certs init: %w", err)
	}
	add("ca", pemCert(caDER), caKeyPEM)

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs init: %w", err)
	}
	for _, f := range files {
		if err := fsutil.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("certs init: %w", err)
		}
	}
	return nil
}

type outFile struct {
	name string
	data []byte
	mode os.FileMode
}

// Issue adds a client certificate NAME.crt/NAME.key (CN = client, client
// authentication only) signed by the CA in dir. It refuses to replace an
// existing one; see IssueWith.
func Issue(dir, client string, days int) error {
	return IssueWith(dir, client, Options{Days: days})
}

// IssueWith is Issue with every option (Overwrite renews a node's certificate).
func IssueWith(dir, client string, o Options) error {
	if err := ValidName(client); err != nil {
		return fmt.Errorf("certs issue: %w", err)
	}
	if err := issueFiles(dir, client, clientTemplate(client), o); err != nil {
		return fmt.Errorf("certs issue %s: %w", client, err)
	}
	return nil
}

// IssueServer writes a new server.crt/server.key for o.Hosts from the CA in
// dir, for renewing the mirror's certificate or changing its names; a running
// mirror picks it up on SIGHUP. It replaces the old pair only with Overwrite.
func IssueServer(dir string, o Options) error {
	hosts, err := parseHosts(o.Hosts)
	if err != nil {
		return fmt.Errorf("certs issue server: %w", err)
	}
	if err := issueFiles(dir, "server", serverTemplate(hosts), o); err != nil {
		return fmt.Errorf("certs issue server: %w", err)
	}
	return nil
}

func issueFiles(dir, base string, tmpl *x509.Certificate, o Options) error {
	certPath, keyPath := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if !o.Overwrite {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s: %w", p, ErrExists)
			}
		}
	}
	ca, caKey, err := LoadCA(dir)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := issue(ca, caKey, tmpl, o, o.clock())
	if err != nil {
		return err
	}
	// Key first: a certificate whose key is missing is worse than the reverse.
	if err := fsutil.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFile(certPath, certPEM, 0o644)
}

// LoadCA reads ca.crt and ca.key from dir and checks that they belong together.
func LoadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("read CA: %s: no PEM CERTIFICATE block", certPath)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA: %s: %w", certPath, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("read CA: %s is not a CA certificate", certPath)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA: %w", err)
	}
	key, err := parseKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA: %s: %w", keyPath, err)
	}
	if !publicKeysEqual(key.Public(), ca.PublicKey) {
		return nil, nil, fmt.Errorf("read CA: %s does not belong to %s", keyPath, certPath)
	}
	return ca, key, nil
}

func serverTemplate(hosts []string) *x509.Certificate {
	t := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"avfleet"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	return t
}

func clientTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		Subject: pkix.Name{CommonName: name, Organization: []string{"avfleet"}},
		// clientAuth only: a node's certificate must not be able to impersonate the mirror.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// issue fills in the common fields of tmpl, signs it with the CA and
// returns the certificate and a new key, PEM-encoded.
func issue(ca *x509.Certificate, caKey crypto.Signer, tmpl *x509.Certificate, o Options, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := newKey(o.KeyType)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.AddDate(0, 0, o.days())
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment // TLS 1.2 RSA key exchange
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemCert(der), keyPEM, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName checks a client (node) name: it becomes a file name and the
// certificate's CN, and the agent's node_name must equal it.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("client name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	if name == "ca" || name == "server" {
		return fmt.Errorf("client name %q: reserved for the CA and server files", name)
	}
	return nil
}

var dnsRE = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

func parseHosts(in []string) ([]string, error) {
	if len(in) == 0 {
		return DefaultHosts, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, h := range in {
		h = strings.TrimSpace(h)
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		if net.ParseIP(h) == nil && (!dnsRE.MatchString(h) || len(h) > 253) {
			return nil, fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out, nil
}

func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case "", ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("key type %q: want %q or %q", t, ECDSAP256, RSA3072)
	}
}

func newSerial() (*big.Int, error) {
	// 127 bits: positive, and far more than RFC 5280's minimum of 64 random bits.
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1<<32)), nil // never short, so the CN suffix has 4 bytes
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// Fingerprint is the SHA-256 of a certificate's DER, as hex, the way
// `openssl x509 -fingerprint -sha256` shows it (without colons).
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}
