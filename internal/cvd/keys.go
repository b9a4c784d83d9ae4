package cvd

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/avfleet/avfleet/internal/fsutil"
)

// ClamAV's public verification keys, as published in its source
// (libclamav/dsig.c, libclamav/readdb.c, libclamav_rust/src/cdiff.rs).
// They are compiled in so that no configuration can weaken the default trust.
const (
	// legacyNStr/legacyEStr verify the CVD header signature (textbook RSA
	// over the body MD5, 1024-bit key).
	legacyNStr = "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037"
	legacyEStr = "100001027"

	// cdiffNStr/cdiffEStr verify cdiff signatures (RSA-PSS/SHA-256).
	cdiffNStr = "14783905874077467090262228516557917570254599638376203532031989214105552847269687489771975792123442185817287694951949800908791527542017115600501303394778618535864845235700041590056318230102449612217458549016089313306591388590790796515819654102320725712300822356348724011232654837503241736177907784198700834440681124727060540035754699658105895050096576226753008596881698828185652424901921668758326578462003247906470982092298106789657211905488986281078346361469524484829559560886227198091995498440676639639830463593211386055065360288422394053998134458623712540683294034953818412458362198117811990006021989844180721010947"
	cdiffEStr = "100002053"

	// infoNStr/infoEStr verify the DSIG line of a database's .info file
	// (RSA-PSS/SHA-256).
	infoNStr = "11088894983048545473659556106627194923928941791795047620591658697413581043322715912172496806525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668378361221524205396631090105151641270857277080310734320951653700508941717419168723942507890702904702707587451621691050754307850383399865346487203798464178537392211402786481359824461197231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809932848454845886971706424360558667862775876072059437703365380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977"
	infoEStr = "100002049"
)

// SignedByClamAV is Info.SignedBy for files signed with ClamAV's official keys.
const SignedByClamAV = "clamav"

// SignedByUnsigned is Info.SignedBy for CUDs and unsigned CLDs.
const SignedByUnsigned = "unsigned"

// KeyBits is the size of keys made by GenerateKey and the largest accepted by
// Build: the legacy header signature of a 2048-bit key (342 characters) is
// the largest that still fits ClamAV's 512-byte header.
const KeyBits = 2048

var (
	officialLegacyKey = mustKey(legacyNStr, legacyEStr)
	officialCDiffKey  = mustKey(cdiffNStr, cdiffEStr)
	officialInfoKey   = mustKey(infoNStr, infoEStr)
)

func mustKey(n, e string) *rsa.PublicKey {
	N, ok := new(big.Int).SetString(n, 10)
	if !ok {
		panic("cvd: bad built-in modulus")
	}
	E, ok := new(big.Int).SetString(e, 10)
	if !ok || !E.IsInt64() {
		panic("cvd: bad built-in exponent")
	}
	return &rsa.PublicKey{N: N, E: int(E.Int64())}
}

// Fingerprint names a public key: the lowercase hex SHA-256 of its PKIX DER
// encoding. Info.SignedBy is "key:" followed by it.
func Fingerprint(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		// Only unusual exponents can fail; fall back to the raw numbers so
		// that the name is still stable and unique.
		der = append(pub.N.Bytes(), big.NewInt(int64(pub.E)).Bytes()...)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func signerName(pub *rsa.PublicKey) string { return "key:" + Fingerprint(pub) }

// ParsePublicKeyPEM parses an RSA public key (PKIX or PKCS#1 PEM).
func ParsePublicKeyPEM(b []byte) (*rsa.PublicKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM public key found (want \"PUBLIC KEY\" or \"RSA PUBLIC KEY\")")
		}
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKIX public key: %w", err)
			}
			rk, ok := k.(*rsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("public key is %T, not RSA", k)
			}
			return rk, nil
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#1 public key: %w", err)
			}
			return k, nil
		case "PRIVATE KEY", "RSA PRIVATE KEY":
			return nil, errors.New("this is a private key: give the public key (PREFIX.pub.pem)")
		}
	}
}

// MarshalPublicKeyPEM encodes pub as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM parses an RSA private key (PKCS#8 or PKCS#1 PEM).
func ParsePrivateKeyPEM(b []byte) (*rsa.PrivateKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM private key found (want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\")")
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, not RSA", k)
			}
			return rk, nil
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#1 private key: %w", err)
			}
			return k, nil
		case "PUBLIC KEY", "RSA PUBLIC KEY":
			return nil, errors.New("this is a public key: cvd build needs the private key (PREFIX.key)")
		}
	}
}

// MarshalPrivateKeyPEM encodes key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(key *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// GenerateKey makes a KeyBits RSA key for signing an organisation's databases.
func GenerateKey() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, KeyBits)
}

// WriteKeyPair generates a key and writes prefix+".key" (mode 0600) and
// prefix+".pub.pem". It refuses to overwrite either file unless overwrite is
// set, so an organisation's signing key is never lost by a typo.
func WriteKeyPair(prefix string, overwrite bool) (*rsa.PrivateKey, error) {
	keyPath, pubPath := prefix+".key", prefix+".pub.pem"
	if !overwrite {
		for _, p := range []string{keyPath, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%s already exists (refusing to overwrite a key)", p)
			}
		}
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	priv, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	pub, err := MarshalPublicKeyPEM(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFile(keyPath, priv, 0o600); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFile(pubPath, pub, 0o644); err != nil {
		return nil, err
	}
	return key, nil
}

// isPlainName reports whether s is acceptable as a database member name: a
// single path element of ASCII letters, digits, '.', '_' or '-', not
// starting with '.', at most 100 bytes (the tar name field).
func isPlainName(s string) bool {
	if s == "" || len(s) > 100 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return !strings.Contains(s, "..")
}
