// Package cvd owns the question "may this ClamAV database file be trusted?".
//
// It parses the 512-byte header of .cvd/.cld/.cud files and the header of
// .cdiff files, streams their tar(.gz) bodies (never holding a whole database
// in memory), verifies every integrity property ClamAV itself checks (body
// MD5, the legacy RSA header signature, the .info DSIG, per-file sizes and
// SHA-256, ClamAV 1.5 detached .sign files), applies cdiff chains, and builds
// CVDs signed with an organisation's own key (or unsigned CUDs).
//
// The mirror runs Verify on every file it accepts and every agent runs it
// again before installing, so a compromised mirror cannot push what ClamAV
// itself would refuse. Every failure is a *VerifyError naming the file, the
// check that failed and why.
//
// cvd imports nothing else from avfleet.
package cvd
