// Package updater keeps a node's ClamAV definitions current from an avfleet
// mirror. It is a mutual-TLS client of the mirror's API (manifest, watch,
// database files), re-verifies everything it downloads with internal/cvd
// under the agent's own trust settings (a mirror cannot make a node accept
// what the node would refuse from ClamAV directly), builds each new set of
// databases in a new directory under state_dir, and switches clamd to it by
// renaming a symlink, then asks clamd to reload and waits for it to confirm.
//
// On disk (state_dir):
//
//	db -> sets/000012      the directory clamd reads (DatabaseDirectory); a symlink
//	prev -> sets/000011    the set before it, put back when clamd refuses the new one
//	sets/000012/           one complete, immutable set: test.cld, daily.cvd, avfleet.ign2 ...
//	sets/.tmp-*/           a set being built; removed at start
//	download/              files being downloaded; emptied at start
//	pending                {"set":"000012","prev":"000011",...}: db was switched to a set
//	                       clamd has not yet been seen to load (see pending.go)
//
// A set directory is complete (every file written and fsynced, the directory
// fsynced) before it gets its final name, and db is only ever replaced by
// rename(2) of a new symlink, so whatever moment the agent dies at, db names
// a complete set that passed verification. clamd resolves the symlink every
// time it (re)loads, so RELOAD picks up the new set. A set that verifies can
// still be one clamd cannot load (an organisation database with a malformed
// signature); pending makes sure an agent that died before clamd's verdict
// checks it at the next start and goes back to prev if clamd refuses it.
package updater
