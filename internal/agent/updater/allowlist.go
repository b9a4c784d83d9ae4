package updater

import (
	"fmt"
	"slices"
	"strings"
)

// Allowlist is what clamd must never report: signature names (written to
// avfleet.ign2) and files by SHA-256 and size (written to avfleet.sfp).
type Allowlist struct {
	Signatures []string
	SHA256     []string // "HASH:SIZE"
}

// files renders the two allowlist files; an empty list gives nil, because
// clamd refuses to start on an empty .sfp ("cli_loadhash: Empty database
// file") and the file is then left out of the set.
func (a Allowlist) files() (ignore, allow []byte, err error) {
	sigs := slices.Clone(a.Signatures)
	slices.Sort(sigs)
	sigs = slices.Compact(sigs)
	var ib strings.Builder
	for _, s := range sigs {
		if s == "" || strings.ContainsAny(s, "\r\n") {
			return nil, nil, fmt.Errorf("allowlist.signatures: %q is not a signature name", s)
		}
		ib.WriteString(s + "\n")
	}
	hashes := make([]string, 0, len(a.SHA256))
	for _, h := range a.SHA256 {
		hash, size, ok := strings.Cut(strings.ToLower(strings.TrimSpace(h)), ":")
		if !ok || !sha256Re.MatchString(hash) || size == "" || strings.Trim(size, "0123456789") != "" {
			return nil, nil, fmt.Errorf("allowlist.sha256: %q is not HASH:SIZE", h)
		}
		hashes = append(hashes, hash+":"+size)
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	var ab strings.Builder
	for i, h := range hashes {
		// clamd's hash signature format is HASH:SIZE:NAME (what `sigtool
		// --sha256` prints); in a .sfp the name only labels the entry.
		fmt.Fprintf(&ab, "%s:avfleet.allowlist.%d\n", h, i+1)
	}
	if ib.Len() > 0 {
		ignore = []byte(ib.String())
	}
	if ab.Len() > 0 {
		allow = []byte(ab.String())
	}
	return ignore, allow, nil
}
