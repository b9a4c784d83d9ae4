// Package agent is the node agent daemon (`avfleet agent run`): it wires the
// parts that live in the packages below it and runs them in order. Limits
// first (the cgroup clamd will join), then definitions (clamd refuses to
// start on an empty database directory, so the first set is installed before
// clamd exists, retrying while the mirror is unreachable), then clamd
// (managed child or external socket), then the updater's loop and watch, the
// report to the mirror, the metrics listener and any Parts added by other
// packages (scheduled scans). SIGTERM stops everything and clamd with it.
//
// It also checks, before anything starts, that node_name equals the CN of
// the client certificate: the mirror knows a node only by that CN and
// refuses reports under another name.
package agent
