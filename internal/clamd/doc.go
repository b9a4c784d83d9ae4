// Package clamd speaks clamd's socket protocol (the one clamdscan uses) over
// a unix socket or TCP: PING, VERSION, STATS, RELOAD, server-side path scans
// (SCAN, CONTSCAN, MULTISCAN), descriptor passing (FILDES), streamed data
// (INSTREAM) and pipelined sessions (IDSESSION/END). It owns the wire format
// and the parsing of clamd's replies into typed results and errors, and
// nothing else: it imports no other avfleet package, starts no clamd and
// keeps no state between calls except what a Session holds. Every call takes
// a context whose deadline bounds the whole exchange and whose cancellation
// closes the connection, so a hung clamd cannot hang the caller.
package clamd
