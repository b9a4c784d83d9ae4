// Package upstream is the mirror's online mode: it keeps the databases listed
// in upstream.databases current from database.clamav.net (or any
// freshclam-style mirror) the way freshclam does, without ever serving
// anything the verifier has not accepted.
//
// A check learns the newest version from the DNS TXT record (when
// upstream.dns_txt is set) or from the first 512 bytes of /{db}.cvd asked
// with If-Modified-Since, then fetches the cdiff chain, falling back to the
// full CVD when the chain is missing, rejected or too long. Every file (and
// the .sign beside it, when upstream has one) is written to incoming/ and
// handed to the same pipeline as an air-gapped import, through the small Sink
// interface: this package does not import internal/mirror, so the mirror
// daemon can start it. A 429 (Retry-After, default 4 h) or 403 (24 h) puts
// that upstream URL on a cool-down that is stored in state.db and so outlives
// restarts; no request is made to it until the cool-down ends.
package upstream
