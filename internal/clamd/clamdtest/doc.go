// Package clamdtest helps test code that talks to clamd. Server is a fake
// clamd on a unix socket or TCP for unit tests: it answers like clamd 1.4,
// records every command, receives FILDES descriptors and INSTREAM data, and
// can be told to reply slowly, hang up, refuse commands or enforce a stream
// size limit. StartReal runs the real clamd with a generated clamd.conf and
// the ClamAV test databases for integration tests, and stops it when the
// test ends. It does not import package clamd, so clamd's own tests can use
// it.
package clamdtest
