package cvd

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Kind is the kind of a database file, decided by its content, not its name.
type Kind string

const (
	KindCVD   Kind = "cvd"   // signed, gzipped tar (ClamAV-VDB header signed with the legacy RSA key)
	KindCLD   Kind = "cld"   // as written by freshclam after patching: header unsigned ("X"), plain tar
	KindCUD   Kind = "cud"   // unsigned database: accepted only with Trust.AllowUnsigned
	KindCDiff Kind = "cdiff" // incremental patch N-1 -> N
)

// Check names the verification step that failed. The mirror records and
// counts rejections by Check, and operators see it in one-line errors, so the
// values are stable.
type Check string

const (
	CheckIO        Check = "io"               // the file could not be read
	CheckFormat    Check = "format"           // not a ClamAV database at all (HTML page, empty, wrong magic)
	CheckHeader    Check = "header"           // header malformed: not printable, wrong field count, bad number
	CheckMD5       Check = "body-md5"         // body MD5 differs from the header's
	CheckSignature Check = "header-signature" // legacy RSA header signature does not verify
	CheckUnsigned  Check = "unsigned"         // a CUD (or unsigned CLD) when unsigned databases are not allowed
	CheckArchive   Check = "archive"          // tar/gzip unsafe or corrupt: traversal, links, devices, bomb, truncation
	CheckInfo      Check = "info"             // .info missing, malformed, or its first line does not match the header
	CheckDSig      Check = "info-dsig"        // .info DSIG does not verify
	CheckFiles     Check = "file-list"        // a listed file missing, size or SHA-256 mismatch, an unlisted file
	CheckDate      Check = "build-time"       // build time more than 24 h in the future
	CheckCDiff     Check = "cdiff"            // cdiff malformed, bad signature, or its script is unsafe/invalid
	CheckVersion   Check = "version"          // cdiff version is not base+1, or database not newer
	CheckSign      Check = "sign"             // ClamAV 1.5 .sign present but fails, or required and absent
)

// VerifyError is every verification failure: which file, which check, why.
type VerifyError struct {
	File   string // base name or path as given by the caller
	Check  Check
	Reason string
	Err    error // underlying error, if any
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("verify %s: %s: %s", e.File, e.Check, e.Reason)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// CheckOf returns the Check of a *VerifyError in err's chain, or "" if none.
func CheckOf(err error) Check {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Check
	}
	return ""
}

// Header is the 512-byte header of a .cvd/.cld/.cud file:
// "ClamAV-VDB:build time:version:sigs:f-level:md5:dsig:builder:stime".
type Header struct {
	Magic     string    `json:"magic"`      // "ClamAV-VDB"
	BuildTime string    `json:"build_time"` // as written, e.g. "08 Mar 2024 09-21 +0000"
	Version   uint      `json:"version"`    // database version
	Sigs      uint      `json:"sigs"`       // signature count the builder declared
	FLevel    uint      `json:"flevel"`     // minimum functionality level
	MD5       string    `json:"md5"`        // lowercase hex MD5 of the body ("X" in a CLD)
	DSig      string    `json:"dsig"`       // legacy RSA signature in ClamAV's base64 ("X" in a CLD)
	Builder   string    `json:"builder"`    // who built it
	Time      time.Time `json:"time"`       // the stime field (unix seconds) as UTC; zero if absent
}

// File is one member of a database's tar body.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Info is what a successful verification established about a file.
type Info struct {
	Path     string `json:"path"`
	Name     string `json:"name"` // database name: "daily", "main", "test"... from the .info first line, else the file name
	Kind     Kind   `json:"kind"`
	Header   Header `json:"header"`
	Files    []File `json:"files,omitempty"`
	Size     int64  `json:"size"`                // bytes of the whole file
	SHA256   string `json:"sha256"`              // of the whole file
	SignedBy string `json:"signed_by"`           // "clamav" (official key), "key:<sha256 of the public key DER>", or "unsigned"
	Sign     string `json:"sign_status"`         // .sign beside the file: "verified", "absent", "unchecked" (no certs configured)
	SignFile string `json:"sign_file,omitempty"` // the .sign that verified: FILE.sign or DB-VERSION.EXT.sign
	// For KindCDiff: the database it patches and the version it produces.
	CDiffVersion uint `json:"cdiff_version,omitempty"`
}

// Limits bound the work a hostile file can cause.
type Limits struct {
	MaxFiles     int   // tar entries; default 1,000
	MaxFileBytes int64 // one entry, decompressed; default 4 GiB
	MaxBytes     int64 // all entries, decompressed; default 8 GiB
	// MaxRatio bounds decompressed/compressed bytes while inflating, so a
	// gzip bomb is refused after reading a few KiB instead of after
	// inflating gigabytes; default 100 (ClamAV databases compress 2-5x).
	MaxRatio int64
}

// Trust is the verifier's configuration: which keys and certificates it
// believes, and what it will allow. The zero value trusts ClamAV's official
// keys only, rejects unsigned databases and passes .sign files unchecked.
type Trust struct {
	Keys          []*rsa.PublicKey // extra keys (organisation databases) beside the built-in official key
	AllowUnsigned bool             // accept CUDs (and unsigned CLDs of an organisation)
	SignRoots     *x509.CertPool   // CAs for ClamAV 1.5 .sign files; nil = .sign not checked
	RequireSign   bool             // with SignRoots: a .sign beside the file must exist
	Now           func() time.Time // for the build-time check; nil = time.Now
	Limits        Limits
}
