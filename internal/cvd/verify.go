package cvd

import (
	"bytes"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// maxFutureSkew is how far in the future a build time may be: more means a
// wrong clock here or a forged header, and either way clamd would warn.
const maxFutureSkew = 24 * time.Hour

// Verify verifies the database or cdiff at path (kind decided by content) and
// the .sign file beside it, under t. A cdiff is verified on its own (signature
// and script syntax); use Patch to check it applies.
func Verify(path string, t *Trust) (*Info, error) {
	info, _, err := verifyPath(path, t, verifyOpts{checkSign: true})
	return info, err
}

// Inspect reads what a database or cdiff says about itself (header, members
// with sizes and SHA-256, for a cdiff its version) without deciding whether
// to trust it: only unreadable files, foreign formats, malformed headers and
// unsafe or corrupt archives are errors. `avfleet cvd info` shows this next
// to Verify's verdict.
func Inspect(path string, l Limits) (*Info, error) {
	info, _, err := verifyPath(path, &Trust{Limits: l}, verifyOpts{inspect: true, structural: true})
	return info, err
}

// verifyOpts are the internal variants of Verify.
type verifyOpts struct {
	checkSign  bool      // look at the .sign beside the file
	structural bool      // archive and .info structure only: no trust decisions
	inspect    bool      // stop after reading the archive (Inspect)
	sink       entrySink // receives member contents (extraction)
}

func (t *Trust) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func verr(file string, c Check, err error, format string, a ...any) *VerifyError {
	return &VerifyError{File: file, Check: c, Reason: fmt.Sprintf(format, a...), Err: err}
}

// ioErr describes an I/O failure without repeating the path.
func ioErr(file string, err error) *VerifyError {
	reason := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Op + ": " + pe.Err.Error()
	}
	return &VerifyError{File: file, Check: CheckIO, Reason: reason, Err: err}
}

// verifyPath opens path, decides its kind from the first bytes and runs the
// matching verification. For databases it also returns the scan result.
func verifyPath(path string, t *Trust, o verifyOpts) (*Info, *scanResult, error) {
	if t == nil {
		t = &Trust{}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, ioErr(path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, ioErr(path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, verr(path, CheckIO, nil, "not a regular file")
	}
	head := make([]byte, HeaderSize)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, nil, ioErr(path, err)
	}
	head = head[:n]
	switch {
	case n == 0:
		return nil, nil, verr(path, CheckFormat, nil, "empty file, not a ClamAV database")
	case bytes.HasPrefix(head, []byte(cdiffMagic+":")):
		info, err := verifyCDiff(path, f, st.Size(), t, o)
		return info, nil, err
	case bytes.HasPrefix(head, []byte(vdbMagic+":")):
		if n < HeaderSize {
			return nil, nil, verr(path, CheckHeader, nil, "file is %d bytes, shorter than the %d-byte header", n, HeaderSize)
		}
		return verifyDB(path, f, head, t, o)
	}
	return nil, nil, verr(path, CheckFormat, nil, "%s", describeForeign(head))
}

// describeForeign says what a file that is not a ClamAV database looks like,
// so "daily.cvd is an HTML page" points at the proxy or CDN that served it.
func describeForeign(b []byte) string {
	t := bytes.TrimLeft(b, " \t\r\n\ufeff") // whitespace and a UTF-8 BOM
	low := bytes.ToLower(t[:min(len(t), 64)])
	switch {
	case bytes.HasPrefix(low, []byte("<!doctype html")), bytes.HasPrefix(low, []byte("<html")),
		bytes.HasPrefix(low, []byte("<head")), bytes.HasPrefix(low, []byte("<body")),
		bytes.HasPrefix(low, []byte("<?xml")), bytes.HasPrefix(low, []byte("<!--")),
		bytes.HasPrefix(low, []byte("<title")):
		return "an HTML/XML page, not a ClamAV database (an error page from a proxy or CDN saved under the database's name?)"
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "a bare gzip stream without the 512-byte ClamAV-VDB header"
	case bytes.HasPrefix(b, []byte("ClamAV-")):
		return "unknown ClamAV file type (want ClamAV-VDB or ClamAV-Diff)"
	case bytes.HasPrefix(b, []byte("#clamsign")):
		return "a ClamAV .sign file, not a database (verify the database beside it)"
	}
	return "not a ClamAV database (no ClamAV-VDB or ClamAV-Diff magic)"
}

// verifyDB checks a .cvd/.cld/.cud. The order of checks follows ClamAV's
// (header, body MD5, header signature, archive, .info, per-file hashes) so
// that the reported Check names the first thing ClamAV itself would trip on.
func verifyDB(path string, f io.Reader, head []byte, t *Trust, o verifyOpts) (*Info, *scanResult, error) {
	hdr, err := ParseHeader(head)
	if err != nil {
		return nil, nil, verr(path, CheckHeader, err, "%v", err)
	}
	res := scanBody(f, head, t.Limits, o.sink)
	if res.ReadErr != nil {
		return nil, res, ioErr(path, res.ReadErr)
	}
	info := &Info{
		Path:   path,
		Name:   dbNameFromPath(path),
		Header: hdr,
		Files:  res.Entries,
		Size:   res.Size,
		SHA256: hex.EncodeToString(res.SHA256[:]),
	}
	if res.BodyLen == 0 {
		return nil, res, verr(path, CheckArchive, nil, "no body after the header (file truncated?)")
	}
	if o.inspect {
		if res.BodyErr != nil {
			return nil, res, classifyBodyErr(path, res.BodyErr)
		}
		info.Kind = KindCVD
		if hdr.DSig == "X" {
			info.Kind = KindCUD
			if bytes.Contains(res.InfoRaw, []byte("\nDSIG:")) {
				info.Kind = KindCLD
			}
		}
		if res.InfoName != "" {
			info.Name = strings.TrimSuffix(res.InfoName, ".info")
		}
		return info, res, nil
	}

	// Body MD5 and header signature: only a CVD (and our CUDs) carry them.
	var signer *rsa.PublicKey // who signed the header, if anyone
	if hdr.MD5 != "X" {
		if got := hex.EncodeToString(res.MD5[:]); got != hdr.MD5 {
			return nil, res, verr(path, CheckMD5, nil, "body MD5 is %s, the header says %s (file corrupt, truncated or not this header's body)", got, hdr.MD5)
		}
	}
	if hdr.DSig != "X" && !o.structural {
		for _, k := range append([]*rsa.PublicKey{officialLegacyKey}, t.Keys...) {
			if verifyLegacy(k, res.MD5[:], hdr.DSig) {
				signer = k
				break
			}
		}
		if signer == nil {
			return nil, res, verr(path, CheckSignature, nil, "header signature does not verify with ClamAV's key or any of the %d configured keys", len(t.Keys))
		}
	}

	// The archive itself.
	if res.BodyErr != nil {
		return nil, res, classifyBodyErr(path, res.BodyErr)
	}

	// The .info: present, well-formed, signed, about this header.
	if res.InfoName == "" {
		return nil, res, verr(path, CheckInfo, nil, "the archive has no .info file")
	}
	info.Name = strings.TrimSuffix(res.InfoName, ".info")
	inf, err := parseInfo(res.InfoRaw)
	if err != nil {
		return nil, res, verr(path, CheckInfo, err, "%s: %v", res.InfoName, err)
	}
	switch {
	case o.structural:
	case inf.HasDSig:
		keys := append([]*rsa.PublicKey{officialInfoKey}, t.Keys...)
		if signer == officialLegacyKey {
			keys = []*rsa.PublicKey{officialInfoKey}
		} else if signer != nil {
			keys = []*rsa.PublicKey{signer}
		}
		k, ok := inf.verifyDSig(keys)
		if !ok {
			who := "ClamAV's .info key or any configured key"
			if signer != nil {
				who = "the key that signed the header"
			}
			return nil, res, verr(path, CheckDSig, nil, "%s DSIG does not verify with %s", res.InfoName, who)
		}
		if signer == nil {
			signer = k
		}
	case signer != nil:
		return nil, res, verr(path, CheckDSig, nil, "%s has no DSIG line, but the header is signed", res.InfoName)
	}
	if d := sameDatabase(hdr, inf.Header); d != "" {
		return nil, res, verr(path, CheckInfo, nil, "first line of %s does not match the header (%s differs: %q)", res.InfoName, d, inf.Header.line("X", "X"))
	}
	if err := checkFileList(res, inf); err != nil {
		return nil, res, verr(path, CheckFiles, nil, "%v", err)
	}

	switch {
	case hdr.DSig != "X":
		info.Kind = KindCVD
	case inf.HasDSig:
		info.Kind = KindCLD
	default:
		info.Kind = KindCUD
	}
	if o.structural {
		return info, res, nil
	}
	switch {
	case signer == officialLegacyKey || signer == officialInfoKey:
		info.SignedBy = SignedByClamAV
	case signer != nil:
		info.SignedBy = signerName(signer)
	default:
		info.SignedBy = SignedByUnsigned
		if !t.AllowUnsigned {
			return nil, res, verr(path, CheckUnsigned, nil, "unsigned database (%s without DSIG): allowed only with allow-unsigned", string(info.Kind))
		}
	}
	if now := t.now(); hdr.Time.After(now.Add(maxFutureSkew)) {
		return nil, res, verr(path, CheckDate, nil, "build time %s is %s in the future (more than 24h): check this machine's clock, or the file is forged",
			hdr.Time.Format(time.RFC3339), hdr.Time.Sub(now).Round(time.Minute))
	}
	if o.checkSign {
		if info.Sign, info.SignFile, err = checkSignBeside(path, hdr.Version, res.SHA256[:], t); err != nil {
			return nil, res, err
		}
	}
	return info, res, nil
}

func classifyBodyErr(path string, err error) error {
	var ie *infoError
	var ioe *ioError
	switch {
	case errors.As(err, &ioe):
		return ioErr(path, ioe.err)
	case errors.As(err, &ie):
		return verr(path, CheckInfo, err, "%v", err)
	}
	return verr(path, CheckArchive, err, "body: %v", err)
}

// checkFileList compares the archive members with the .info list: every
// listed file present with its size and SHA-256, nothing unlisted but
// COPYING (which ClamAV never lists).
func checkFileList(res *scanResult, inf *infoFile) error {
	got := make(map[string]File, len(res.Entries))
	for _, e := range res.Entries {
		got[e.Name] = e
	}
	listed := make(map[string]bool, len(inf.Files))
	for _, l := range inf.Files {
		listed[l.Name] = true
		e, ok := got[l.Name]
		switch {
		case !ok:
			return fmt.Errorf("%s is listed in %s but missing from the archive", l.Name, res.InfoName)
		case e.Size != l.Size:
			return fmt.Errorf("%s is %d bytes, %s says %d", l.Name, e.Size, res.InfoName, l.Size)
		case e.SHA256 != l.SHA256:
			return fmt.Errorf("%s SHA-256 is %s, %s says %s", l.Name, e.SHA256, res.InfoName, l.SHA256)
		}
	}
	for _, e := range res.Entries {
		if e.Name == "COPYING" || e.Name == res.InfoName || listed[e.Name] {
			continue
		}
		return fmt.Errorf("%s is in the archive but not listed in %s", e.Name, res.InfoName)
	}
	return nil
}

// dbNameFromPath guesses a database name from a file name ("daily-123.cdiff",
// "daily.cvd" -> "daily"), for files whose content does not name it.
func dbNameFromPath(path string) string {
	base := filepath.Base(path)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	if i := strings.LastIndexByte(base, '-'); i > 0 && strings.Trim(base[i+1:], "0123456789") == "" {
		base = base[:i]
	}
	return base
}
