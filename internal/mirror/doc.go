// Package mirror owns the definitions mirror: the on-disk store that turns
// files dropped into incoming/ into a served, verified set; the rules that
// decide which database versions are accepted; and the HTTP server that hands
// the verified set to freshclam and to avfleet agents.
//
// The store is built so that a crash at any instant leaves the last complete
// verified set served. Every accepted file is committed into
// history/<db>/<version>/ (data first, a .meta sidecar last: a file without its
// sidecar was never accepted). What clients see is a snapshot directory
// sets/<generation>/ of hard links into history plus an index.json; the
// symbolic link verified -> sets/<generation> is replaced with one rename, so a
// reader sees either the old set or the new one, never a mixture. Holds and
// rollbacks are rows in state.db that change which versions the next snapshot
// takes.
//
// One flock on data_dir/lock serialises pipeline work between the daemon and
// the CLI commands (import, hold, release, rollback). The daemon notices a new
// snapshot by watching the verified link (inotify on Linux, and a poll twice a
// second everywhere), so commands work while it runs.
//
// Upstream sync (online mode) uses the same pipeline: it writes a download with
// PutIncoming and calls Ingest, exactly as a file dropped by hand.
package mirror
