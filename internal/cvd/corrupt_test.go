package cvd

import (
	"bytes"
	"compress/gzip"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// flip returns a copy of b with byte i XORed with x.
func flip(b []byte, i int, x byte) []byte {
	c := bytes.Clone(b)
	c[i] ^= x
	return c
}

// replaceIn returns a copy of b with the first old (inside [from,to))
// replaced by new of the same length.
func replaceIn(t testing.TB, b []byte, from, to int, old, new string) []byte {
	t.Helper()
	if len(old) != len(new) {
		t.Fatal("replaceIn: lengths differ")
	}
	i := bytes.Index(b[from:to], []byte(old))
	if i < 0 {
		t.Fatalf("replaceIn: %q not found", old)
	}
	c := bytes.Clone(b)
	copy(c[from+i:], new)
	return c
}

// headerField returns the offset of field n (0-based) in a header.
func headerField(t testing.TB, b []byte, n int) int {
	t.Helper()
	off := 0
	for i := 0; i < n; i++ {
		j := bytes.IndexByte(b[off:HeaderSize], ':')
		if j < 0 {
			t.Fatal("headerField: too few fields")
		}
		off += j + 1
	}
	return off
}

// swapChar replaces the character at i with another of the same class, so
// the header stays well-formed and only its meaning changes.
func swapChar(b []byte, i int) []byte {
	c := bytes.Clone(b)
	switch ch := c[i]; {
	case ch == '+':
		c[i] = '/'
	case ch == '/':
		c[i] = '+'
	case ch >= '0' && ch <= '8', ch >= 'a' && ch <= 'y', ch >= 'A' && ch <= 'Y':
		c[i]++
	default:
		c[i]--
	}
	return c
}

type corruptCase struct {
	name  string
	want  Check
	file  string // base name to write data as (default db.cvd)
	data  func(t *testing.T) []byte
	trust func(t testing.TB) *Trust
	side  map[string]func(t *testing.T) []byte // more files beside it (e.g. .sign)
}

func TestCorruptAndMaliciousInputs(t *testing.T) {
	real6 := func(t *testing.T) []byte { return readFile(t, testdata(t, "test-6.cvd")) }
	cld6 := func(t *testing.T) []byte { return readFile(t, testdata(t, "test-6.freshclam.cld")) }
	key := func(t *testing.T) *rsa.PrivateKey { k, _ := testKeys(t); return k }
	// db builds an org-signed database whose members are exactly ms, with
	// a correct .info for sampleHDB and sampleNDB (so only the members'
	// own defect is wrong).
	db := func(t *testing.T, h Header, ms ...rawEntry) []byte {
		info := infoFor(t, h, key(t), sampleHDB, sampleNDB)
		all := append([]rawEntry{copying, entry("acme.info", info)}, ms...)
		return signedFile(t, h, key(t), gz(rawTar(all, true)))
	}
	h7 := testHeader(7, 2)
	cases := []corruptCase{
		// Not a database at all.
		{name: "empty file", want: CheckFormat, data: func(*testing.T) []byte { return nil }},
		{name: "HTML error page as daily.cvd", want: CheckFormat, file: "daily.cvd", data: func(*testing.T) []byte {
			return []byte("<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head><body>Please retry</body></html>\n")
		}},
		{name: "bare gzip", want: CheckFormat, data: func(t *testing.T) []byte { return real6(t)[HeaderSize:] }},
		{name: "a .sign file", want: CheckFormat, data: func(t *testing.T) []byte { return readFile(t, testdata(t, "test-6.cvd.sign")) }},

		// Header.
		{name: "truncated inside the header", want: CheckHeader, data: func(t *testing.T) []byte { return real6(t)[:300] }},
		{name: "header padded with NUL", want: CheckHeader, data: func(t *testing.T) []byte {
			b := real6(t)
			for i := HeaderSize - 60; i < HeaderSize; i++ {
				b[i] = 0
			}
			return b
		}},
		{name: "NUL inside a header field", want: CheckHeader, data: func(t *testing.T) []byte {
			b := real6(t)
			b[headerField(t, b, 7)+2] = 0 // in the builder name
			return b
		}},
		{name: "non-printable header byte", want: CheckHeader, data: func(t *testing.T) []byte { return flip(real6(t), 20, 0x80) }},
		{name: "wrong field count", want: CheckHeader, data: func(t *testing.T) []byte {
			b := real6(t)
			i := headerField(t, b, 8) - 1 // the ':' before stime
			b[i] = ' '
			return b
		}},
		{name: "version not a number", want: CheckHeader, data: func(t *testing.T) []byte {
			b := real6(t)
			b[headerField(t, b, 2)] = 'x'
			return b
		}},
		{name: "MD5 field not hex", want: CheckHeader, data: func(t *testing.T) []byte {
			b := real6(t)
			b[headerField(t, b, 5)] = 'G'
			return b
		}},

		// Bit flips in a real, ClamAV-signed CVD.
		{name: "flipped version", want: CheckInfo, data: func(t *testing.T) []byte { b := real6(t); return swapChar(b, headerField(t, b, 2)) }},
		{name: "flipped signature count", want: CheckInfo, data: func(t *testing.T) []byte { b := real6(t); return swapChar(b, headerField(t, b, 3)) }},
		{name: "flipped f-level", want: CheckInfo, data: func(t *testing.T) []byte { b := real6(t); return swapChar(b, headerField(t, b, 4)) }},
		{name: "flipped builder", want: CheckInfo, data: func(t *testing.T) []byte { b := real6(t); return swapChar(b, headerField(t, b, 7)) }},
		{name: "flipped build time", want: CheckInfo, data: func(t *testing.T) []byte { b := real6(t); return swapChar(b, headerField(t, b, 8)+9) }},
		{name: "flipped MD5 field", want: CheckMD5, data: func(t *testing.T) []byte { b := real6(t); return swapChar(b, headerField(t, b, 5)+3) }},
		{name: "flipped header signature", want: CheckSignature, data: func(t *testing.T) []byte { b := real6(t); return swapChar(b, headerField(t, b, 6)+40) }},
		{name: "flipped body byte", want: CheckMD5, data: func(t *testing.T) []byte { return flip(real6(t), HeaderSize+2000, 0x10) }},
		{name: "flipped last byte", want: CheckMD5, data: func(t *testing.T) []byte { b := real6(t); return flip(b, len(b)-1, 0x01) }},

		// Truncation at several points.
		{name: "truncated to the header", want: CheckArchive, data: func(t *testing.T) []byte { return real6(t)[:HeaderSize] }},
		{name: "truncated after 10 body bytes", want: CheckMD5, data: func(t *testing.T) []byte { return real6(t)[:HeaderSize+10] }},
		{name: "truncated mid-body", want: CheckMD5, data: func(t *testing.T) []byte { b := real6(t); return b[:len(b)/2] }},
		{name: "truncated by one byte", want: CheckMD5, data: func(t *testing.T) []byte { b := real6(t); return b[:len(b)-1] }},
		{name: "CLD truncated mid-entry", want: CheckArchive, file: "test.cld", data: func(t *testing.T) []byte { return cld6(t)[:HeaderSize+20000] }},
		{name: "CLD truncated after its fifth member", want: CheckFiles, file: "test.cld", data: func(t *testing.T) []byte {
			b := cld6(t)
			return b[:HeaderSize+memberEnd(t, b[HeaderSize:], 5)]
		}},

		// Headers and bodies that do not belong together.
		{name: "valid header on another file's body", want: CheckMD5, data: func(t *testing.T) []byte {
			return append(readFile(t, testdata(t, "test-5.cvd"))[:HeaderSize], real6(t)[HeaderSize:]...)
		}},
		{name: "CLD header of another version", want: CheckInfo, file: "test.cld", data: func(t *testing.T) []byte {
			b := cld6(t)
			hb, _ := encodeHeader("ClamAV-VDB:22 Jun 2021 21-34 -0400:5:14:81:X:X:micasnyd:1624412045")
			return append(hb, b[HeaderSize:]...)
		}},
		{name: "header signed by an unknown key", want: CheckSignature, data: func(t *testing.T) []byte { return goodDB(t, nil) }},
		{name: "CVD with another body but its MD5 re-signed by an unknown key", want: CheckSignature, data: func(t *testing.T) []byte {
			_, evil := testKeys(t)
			return signedFile(t, testHeader(6, 14), evil, real6(t)[HeaderSize:])
		}},

		// The .info and its DSIG (organisation-signed, so MD5 and the
		// header signature hold).
		{name: "flipped byte in .info", want: CheckDSig, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, key(t), sampleHDB, sampleNDB)
			info = swapChar(info, bytes.Index(info, []byte("acme.ndb:"))+10)
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},
		{name: "DSIG not in ClamAV's base-64", want: CheckDSig, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, key(t), sampleHDB, sampleNDB)
			info[bytes.Index(info, []byte("DSIG:"))+30] = '-'
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},
		{name: "flipped DSIG", want: CheckDSig, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, key(t), sampleHDB, sampleNDB)
			info = swapChar(info, bytes.Index(info, []byte("DSIG:"))+30)
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},
		{name: "DSIG by another key than the header", want: CheckDSig, data: func(t *testing.T) []byte {
			return goodDB(t, func(_ *Header, ik **rsa.PrivateKey, _ *[]rawEntry) { _, *ik = testKeys(t) })
		}, trust: func(t testing.TB) *Trust {
			org, evil := testKeys(t)
			return &Trust{Keys: []*rsa.PublicKey{&org.PublicKey, &evil.PublicKey}}
		}},
		{name: "signed CVD whose .info has no DSIG", want: CheckDSig, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, nil, sampleHDB, sampleNDB)
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},
		{name: ".info missing", want: CheckInfo, trust: orgTrust, data: func(t *testing.T) []byte {
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{copying, sampleHDB, sampleNDB}, true)))
		}},
		{name: ".info first line of another version", want: CheckInfo, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, testHeader(8, 2), key(t), sampleHDB, sampleNDB)
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},
		{name: ".info with a line after DSIG", want: CheckInfo, trust: orgTrust, data: func(t *testing.T) []byte {
			info := append(infoFor(t, h7, key(t), sampleHDB, sampleNDB), "evil.hdb:1:00\n"...)
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},
		{name: "two .info files", want: CheckInfo, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, key(t), sampleHDB, sampleNDB)
			return signedFile(t, h7, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), entry("b.info", info), sampleHDB, sampleNDB}, false)))
		}},

		// The member list.
		{name: "unlisted extra file", want: CheckFiles, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, sampleHDB, sampleNDB, entry("evil.ldb", []byte("Evil;Target:0;0;41\n")))
		}},
		{name: "missing listed file", want: CheckFiles, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, sampleHDB) }},
		{name: "size mismatch", want: CheckFiles, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, sampleHDB, entry("acme.ndb", append(bytes.Clone(sampleNDB.data), "Acme.More:0:*:4142\n"...)))
		}},
		{name: "hash mismatch, same size", want: CheckFiles, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, sampleHDB, entry("acme.ndb", swapChar(sampleNDB.data, 5)))
		}},

		// Unsafe archives.
		{name: "path traversal", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, entry("../acme.hdb", sampleHDB.data)) }},
		{name: "absolute path", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, entry("/etc/cron.d/x", []byte("* * * * * root id\n"))) }},
		{name: "subdirectory", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, entry("sub/acme.hdb", sampleHDB.data)) }},
		{name: "symlink", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, rawEntry{name: "acme.hdb", typ: '2', link: "/etc/shadow", size: -1})
		}},
		{name: "hard link", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, rawEntry{name: "acme.hdb", typ: '1', link: "COPYING", size: -1})
		}},
		{name: "character device", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, rawEntry{name: "acme.hdb", typ: '3', size: -1}) }},
		{name: "block device", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, rawEntry{name: "acme.hdb", typ: '4', size: -1}) }},
		{name: "directory entry", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, rawEntry{name: "acme", typ: '5', size: -1}) }},
		{name: "pax extended header", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, rawEntry{name: "pax", typ: 'x', data: []byte("30 path=../../etc/passwd\n"), size: -1}, sampleHDB, sampleNDB)
		}},
		{name: "GNU long name", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, rawEntry{name: "././@LongLink", typ: 'L', data: []byte("../evil\x00"), size: -1}, sampleHDB, sampleNDB)
		}},
		{name: "duplicate member", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return db(t, h7, sampleHDB, sampleNDB, sampleHDB) }},
		{name: "entry size beyond the data", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			return db(t, h7, sampleHDB, rawEntry{name: "acme.ndb", data: sampleNDB.data, size: 1 << 20})
		}},
		{name: "bad tar checksum", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, key(t), sampleHDB, sampleNDB)
			tar := rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, true)
			tar[148] ^= 1
			return signedFile(t, h7, key(t), gz(tar))
		}},
		{name: "data after the end-of-archive marker", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, key(t), sampleHDB, sampleNDB)
			tar := append(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, true), "hidden payload"...)
			return signedFile(t, h7, key(t), gz(tar))
		}},
		{name: "garbage after the gzip stream", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte {
			info := infoFor(t, h7, key(t), sampleHDB, sampleNDB)
			body := append(gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, true)), "<html>trailer</html>"...)
			return signedFile(t, h7, key(t), body)
		}},
		{name: "gzip bomb", want: CheckArchive, trust: orgTrust, data: func(t *testing.T) []byte { return gzipBomb(t, 64<<20) }},
		{name: "too many members", want: CheckArchive, data: func(t *testing.T) []byte {
			var ms []rawEntry
			for i := 0; i < 12; i++ {
				ms = append(ms, entry(fmt.Sprintf("m%d.hdb", i), nil))
			}
			return db(t, h7, ms...)
		}, trust: func(t testing.TB) *Trust { tr := orgTrust(t); tr.Limits.MaxFiles = 10; return tr }},
		{name: "member larger than the limit", want: CheckArchive, data: func(t *testing.T) []byte { return db(t, h7, sampleHDB, sampleNDB) },
			trust: func(t testing.TB) *Trust { tr := orgTrust(t); tr.Limits.MaxFileBytes = 50; return tr }},

		// Policy: unsigned databases, dates.
		{name: "CUD when unsigned databases are not allowed", want: CheckUnsigned, file: "acme.cud", data: func(t *testing.T) []byte {
			info := infoFor(t, h7, nil, sampleHDB, sampleNDB)
			return signedFile(t, h7, nil, gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},
		{name: "build time 3 days in the future", want: CheckDate, trust: orgTrust, data: func(t *testing.T) []byte {
			h := testHeader(7, 2)
			h.Time = time.Now().Add(72 * time.Hour).Truncate(time.Second).UTC()
			info := infoFor(t, h, key(t), sampleHDB, sampleNDB)
			return signedFile(t, h, key(t), gz(rawTar([]rawEntry{entry("acme.info", info), sampleHDB, sampleNDB}, false)))
		}},

		// cdiffs.
		{name: "cdiff with a flipped script byte", want: CheckCDiff, file: "test-2.cdiff", data: func(t *testing.T) []byte {
			return flip(readFile(t, testdata(t, "test-2.cdiff")), 40, 0x04)
		}},
		{name: "cdiff with a flipped signature", want: CheckCDiff, file: "test-2.cdiff", data: func(t *testing.T) []byte {
			b := readFile(t, testdata(t, "test-2.cdiff"))
			return swapChar(b, len(b)-100)
		}},
		{name: "cdiff without signature", want: CheckCDiff, file: "test-2.cdiff", data: func(t *testing.T) []byte {
			b := readFile(t, testdata(t, "test-2.cdiff"))
			return b[:bytes.LastIndexByte(b, ':')]
		}},
		{name: "cdiff signed by an unknown key", want: CheckCDiff, file: "x-2.cdiff", data: func(t *testing.T) []byte {
			return makeCDiff(t, 2, "OPEN x.hdb\nADD a:1:B\nCLOSE\n", key(t))
		}},
		{name: "cdiff script opening ../x", want: CheckCDiff, file: "x-2.cdiff", trust: orgTrust, data: func(t *testing.T) []byte {
			return makeCDiff(t, 2, "OPEN ../x\nADD owned\nCLOSE\n", key(t))
		}},
		{name: "cdiff script unlinking an absolute path", want: CheckCDiff, file: "x-2.cdiff", trust: orgTrust, data: func(t *testing.T) []byte {
			return makeCDiff(t, 2, "UNLINK /etc/passwd\n", key(t))
		}},
		{name: "cdiff with an unknown command", want: CheckCDiff, file: "x-2.cdiff", trust: orgTrust, data: func(t *testing.T) []byte {
			return makeCDiff(t, 2, "OPEN x.hdb\nRUN /bin/sh\nCLOSE\n", key(t))
		}},
		{name: "cdiff script longer than declared", want: CheckCDiff, file: "x-2.cdiff", trust: orgTrust, data: func(t *testing.T) []byte {
			s := "OPEN x.hdb\nADD a:1:B\nCLOSE\n"
			b := []byte(fmt.Sprintf("ClamAV-Diff:2:%d:", len(s)-5))
			b = append(b, gz([]byte(s))...)
			return resignCDiff(t, b)
		}},
		{name: "cdiff with a huge line", want: CheckCDiff, file: "x-2.cdiff", trust: orgTrust, data: func(t *testing.T) []byte {
			return makeCDiff(t, 2, "OPEN x.hdb\nADD "+strings.Repeat("a", 2<<20)+"\nCLOSE\n", key(t))
		}},
		{name: "cdiff named for another version", want: CheckVersion, file: "test-3.cdiff", data: func(t *testing.T) []byte {
			return readFile(t, testdata(t, "test-2.cdiff"))
		}},

		// ClamAV 1.5 .sign files.
		{name: ".sign from an untrusted CA", want: CheckSign, file: "test-6.cvd", data: real6,
			side: map[string]func(*testing.T) []byte{"test-6.cvd.sign": func(t *testing.T) []byte { return readFile(t, testdata(t, "test-6.cvd.sign")) }},
			trust: func(t testing.TB) *Trust {
				roots, err := LoadSignRoots(certsDirWith(t, otherCA(t)))
				if err != nil {
					t.Fatal(err)
				}
				return &Trust{SignRoots: roots}
			}},
	}
	seen := map[Check]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			name := c.file
			if name == "" {
				name = "db.cvd"
			}
			p := writeFile(t, dir, name, c.data(t))
			for n, f := range c.side {
				writeFile(t, dir, n, f(t))
			}
			var tr *Trust
			if c.trust != nil {
				tr = c.trust(t)
			}
			info, err := Verify(p, tr)
			if err == nil {
				t.Fatalf("accepted: %+v", info)
			}
			var ve *VerifyError
			if !asVerifyError(err, &ve) {
				t.Fatalf("error is %T, not *VerifyError: %v", err, err)
			}
			if ve.Check != c.want || ve.File != p || ve.Reason == "" {
				t.Fatalf("got %v (check %q), want check %q", err, ve.Check, c.want)
			}
			if !strings.HasPrefix(err.Error(), "verify "+p+": "+string(c.want)+": ") {
				t.Errorf("message %q", err)
			}
			seen[c.want]++
		})
	}
	if len(cases) < 25 {
		t.Errorf("only %d cases", len(cases))
	}
	t.Logf("%d cases by check: %v", len(cases), seen)
}

// memberEnd returns the offset in a plain tar where member n ends.
func memberEnd(t *testing.T, tar []byte, n int) int {
	off := 0
	for i := 0; i < n; i++ {
		var blk [tarBlock]byte
		copy(blk[:], tar[off:])
		h, err := parseTarHeader(&blk)
		if err != nil {
			t.Fatal(err)
		}
		off += tarBlock + int(h.Size+(tarBlock-h.Size%tarBlock)%tarBlock)
	}
	return off
}

func asVerifyError(err error, ve **VerifyError) bool {
	v, ok := err.(*VerifyError)
	*ve = v
	return ok
}

// resignCDiff signs b (header and compressed script) with the org key.
func resignCDiff(t *testing.T, b []byte) []byte {
	key, _ := testKeys(t)
	d := sha256.Sum256(b)
	sig, err := signPSS(key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return append(append(b, ':'), sig...)
}

// gzipBomb is an org-signed CVD whose one member claims n bytes of zeros:
// a few hundred KiB on disk.
func gzipBomb(t testing.TB, n int64) []byte {
	t.Helper()
	k, _ := testKeys(t)
	h := testHeader(7, 2)
	info := infoFor(t, h, k, sampleHDB, sampleNDB)
	var body bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&body, gzip.BestSpeed)
	zw.Write(rawTar([]rawEntry{entry("acme.info", info)}, false))
	var hdr [tarBlock]byte
	copy(hdr[:], rawTar([]rawEntry{{name: "acme.hdb", size: n}}, false)[:tarBlock])
	zw.Write(hdr[:])
	zeros := make([]byte, 1<<20)
	for w := int64(0); w < n; w += int64(len(zeros)) {
		zw.Write(zeros)
	}
	zw.Close()
	return signedFile(t, h, k, body.Bytes())
}

func TestGzipBombIsCheap(t *testing.T) {
	bomb := gzipBomb(t, 1<<30) // 1 GiB of zeros, about 1 MiB compressed
	p := writeFile(t, t.TempDir(), "bomb.cvd", bomb)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Verify(p, orgTrust(t))
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	wantCheck(t, err, CheckArchive)
	if !strings.Contains(err.Error(), "gzip bomb") {
		t.Errorf("reason: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("took %v to refuse a %d-byte bomb", took, len(bomb))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("allocated %d MiB to refuse it", alloc>>20)
	}
	t.Logf("refused %d KiB bomb in %v: %v", len(bomb)>>10, took, err)
}

func TestVerifyNotRegular(t *testing.T) {
	_, err := Verify(t.TempDir(), nil)
	wantCheck(t, err, CheckIO)
	_, err = Verify(filepath.Join(t.TempDir(), "missing.cvd"), nil)
	wantCheck(t, err, CheckIO)
	if err != nil && strings.Count(err.Error(), "missing.cvd") != 1 {
		t.Errorf("path repeated: %v", err)
	}
}
