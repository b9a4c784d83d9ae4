//go:build unix

package clamd

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// sendFD passes f's descriptor with SCM_RIGHTS, carried by one NUL byte as
// clamdscan does. The descriptor is used through SyscallConn so f stays open
// (and non-blocking mode untouched) while the kernel copies it.
func sendFD(c net.Conn, f *os.File) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix socket connection")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	cerr := rc.Control(func(fd uintptr) {
		_, _, werr = uc.WriteMsgUnix([]byte{0}, syscall.UnixRights(int(fd)), nil)
	})
	if cerr != nil {
		return cerr
	}
	return werr
}
