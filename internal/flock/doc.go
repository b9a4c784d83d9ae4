// Package flock is the exclusive file lock that serialises avfleet processes
// sharing one directory: the mirror daemon and its CLI commands on data_dir,
// the agent daemon and `avfleet agent update` on state_dir. flock is
// released by the kernel when a process dies, so a kill -9 never leaves the
// directory locked. It imports nothing of the project.
package flock
