//go:build !unix

package clamdtest

import "net"

type fdReader struct{ c net.Conn }

func (r *fdReader) Read(p []byte) (int, error) { return r.c.Read(p) }
func (r *fdReader) popFD() (int, bool)         { return -1, false }
func (r *fdReader) closeFDs()                  {}
func readFD(int) (string, []byte)              { return "", nil }
