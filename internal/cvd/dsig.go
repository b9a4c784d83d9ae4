package cvd

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"math/big"
)

// ClamAV encodes signature integers in its own base-64 variant: alphabet
// a-z A-Z 0-9 + /, least significant 6-bit digit first (libclamav/dsig.c).
const clamB64 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"

// maxSigChars bounds an encoded signature: 4096-bit keys need 683 digits;
// anything longer is not a signature we could check.
const maxSigChars = 700

var clamB64Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(clamB64); i++ {
		t[clamB64[i]] = int8(i)
	}
	return t
}()

var errSigEncoding = errors.New("signature is not in ClamAV's base-64 encoding")

// decodeClamSig turns an encoded signature into its integer.
func decodeClamSig(s string) (*big.Int, error) {
	if s == "" || len(s) > maxSigChars {
		return nil, errSigEncoding
	}
	// Little-endian 6-bit digits: build the big-endian bit string from the
	// last character backwards.
	v := new(big.Int)
	for i := len(s) - 1; i >= 0; i-- {
		d := clamB64Index[s[i]]
		if d < 0 {
			return nil, errSigEncoding
		}
		v.Lsh(v, 6)
		v.Or(v, big.NewInt(int64(d)))
	}
	return v, nil
}

// encodeClamSig encodes v with exactly ceil(bits/6) digits, bits being the
// key's modulus size, so signatures made with one key have one length.
func encodeClamSig(v *big.Int, bits int) string {
	n := (bits + 5) / 6
	out := make([]byte, n)
	t := new(big.Int).Set(v)
	mask := big.NewInt(63)
	d := new(big.Int)
	for i := 0; i < n; i++ {
		d.And(t, mask)
		out[i] = clamB64[d.Int64()]
		t.Rsh(t, 6)
	}
	return string(out)
}

// verifyLegacy checks ClamAV's header signature: textbook RSA, sig^E mod N
// must equal the 16-byte body MD5 (as a big-endian integer). ClamAV only
// compares the low 16 bytes; we demand the whole value match, which every
// genuine signature satisfies.
func verifyLegacy(pub *rsa.PublicKey, md5sum []byte, sig string) bool {
	s, err := decodeClamSig(sig)
	if err != nil || s.Sign() == 0 || s.Cmp(pub.N) >= 0 {
		return false
	}
	m := new(big.Int).Exp(s, big.NewInt(int64(pub.E)), pub.N)
	return m.Cmp(new(big.Int).SetBytes(md5sum)) == 0
}

// signLegacy makes the header signature of md5sum with key (the inverse of
// verifyLegacy).
func signLegacy(key *rsa.PrivateKey, md5sum []byte) string {
	m := new(big.Int).SetBytes(md5sum)
	s := new(big.Int).Exp(m, key.D, key.N)
	return encodeClamSig(s, key.N.BitLen())
}

// pssOpts is ClamAV's RSA-PSS profile (cli_versig2): SHA-256, MGF1-SHA-256,
// 32-byte salt.
var pssOpts = &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}

// verifyPSS checks an encoded RSA-PSS signature over a SHA-256 digest.
func verifyPSS(pub *rsa.PublicKey, digest []byte, sig string) bool {
	s, err := decodeClamSig(sig)
	if err != nil || s.Sign() == 0 || s.Cmp(pub.N) >= 0 {
		return false
	}
	k := (pub.N.BitLen() + 7) / 8
	b := s.FillBytes(make([]byte, k))
	if rsa.VerifyPSS(pub, crypto.SHA256, digest, b, pssOpts) == nil {
		return true
	}
	return verifyPSSClamAV(pub, digest, s, k)
}

// verifyPSSClamAV is EMSA-PSS-VERIFY (RFC 8017 9.1.2) the way libclamav's
// cli_versig2 does it: the encoded message is the full k bytes of the
// modulus and only its top bit must be clear (emBits = 8k-1). For ClamAV's
// 2047-bit keys Go's rsa.VerifyPSS uses emBits = 2046 and so refuses genuine
// signatures whose second bit is set (test-5.cvd's .info DSIG is one).
func verifyPSSClamAV(pub *rsa.PublicKey, digest []byte, s *big.Int, k int) bool {
	const hLen, sLen = sha256.Size, 32
	em := new(big.Int).Exp(s, big.NewInt(int64(pub.E)), pub.N).FillBytes(make([]byte, k))
	if len(digest) != hLen || k < hLen+sLen+2 || em[k-1] != 0xbc || em[0]&0x80 != 0 {
		return false
	}
	db := append([]byte(nil), em[:k-hLen-1]...)
	h := em[k-hLen-1 : k-1]
	// MGF1 with SHA-256.
	var counter [4]byte
	for off := 0; off < len(db); off += hLen {
		m := sha256.New()
		m.Write(h)
		m.Write(counter[:])
		sum := m.Sum(nil)
		for i := 0; i < hLen && off+i < len(db); i++ {
			db[off+i] ^= sum[i]
		}
		for i := 3; i >= 0; i-- {
			if counter[i]++; counter[i] != 0 {
				break
			}
		}
	}
	db[0] &= 0x7f
	ps := len(db) - sLen - 1
	for _, c := range db[:ps] {
		if c != 0 {
			return false
		}
	}
	if db[ps] != 0x01 {
		return false
	}
	m := sha256.New()
	m.Write(make([]byte, 8))
	m.Write(digest)
	m.Write(db[ps+1:])
	return subtle.ConstantTimeCompare(m.Sum(nil), h) == 1
}

// signPSS makes an encoded RSA-PSS signature over a SHA-256 digest.
func signPSS(key *rsa.PrivateKey, digest []byte) (string, error) {
	b, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest, pssOpts)
	if err != nil {
		return "", err
	}
	return encodeClamSig(new(big.Int).SetBytes(b), key.N.BitLen()), nil
}
