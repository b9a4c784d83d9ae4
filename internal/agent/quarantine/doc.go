// Package quarantine keeps infected files that a scan action copied or moved
// out of the way, harmless at rest, with what is needed to put each back
// exactly: the original path (and, for a file in a container, the container
// and the path inside it), owner, mode, size, modification time, SHA-256,
// the signature that matched, and when. The directory is 0700, every stored
// file 0400 (never executable), every metadata file 0600, all owned by the
// agent. Restore writes the bytes back beside the original name, checks them
// against the recorded SHA-256, gives back owner, mode and mtime, and renames
// into place without ever replacing a file that has reappeared there. Paths
// are resolved one component at a time without following symlinks, so a
// directory swapped for a link since the scan cannot redirect a restore.
package quarantine
