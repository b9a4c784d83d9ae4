//go:build unix && !linux

package clamd

import (
	"context"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netSock is a Pipeline's socket where there is no raw path (see
// pipesock_linux.go): a net.UnixConn, its waits through the runtime's poller.
type netSock struct {
	conn *net.UnixConn
	rc   syscall.RawConn
}

func dialPipeSock(ctx context.Context, path string) (pipeSock, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	conn := nc.(*net.UnixConn)
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &netSock{conn: conn, rc: rc}, nil
}

func (s *netSock) sendmsg(ctx context.Context, b, oob []byte) error {
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, err := unix.SendmsgN(int(fd), b, oob, nil, 0)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // wait until writable
			case err != nil:
				serr = err
				return true
			}
			b, oob = b[n:], nil
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

func (s *netSock) read(b []byte, wait time.Duration) (int, error) {
	s.conn.SetReadDeadline(time.Now().Add(wait))
	return s.conn.Read(b)
}

func (s *netSock) close() error { return s.conn.Close() }
