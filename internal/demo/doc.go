// Package demo is `avfleet demo`: the quick start that shows the whole
// product working on one machine, with the real pieces and nothing faked.
// In a temporary directory it makes a fleet CA and certificates, an
// organisation signing key and a small database signed with it, runs the
// mirror daemon (mutual TLS on loopback) and imports the database, runs the
// agent daemon with its managed clamd, writes sample files (EICAR made at run
// time, plain and inside a zip and a tar.gz), scans them, then publishes
// version 2 of the database and shows the agent installing it within a second
// and finding what only version 2 knows. Mirror and agent run in this process
// (the same code as `mirror serve` and `agent run`), each logging to its own
// file, so the demo can watch them and always stops them.
package demo
