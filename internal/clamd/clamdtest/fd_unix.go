//go:build unix

package clamdtest

import (
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// fdReader reads a connection and keeps the descriptors that arrive with
// SCM_RIGHTS, in order, for FILDES.
type fdReader struct {
	c   net.Conn
	mu  sync.Mutex
	fds []int
}

func (r *fdReader) Read(p []byte) (int, error) {
	uc, ok := r.c.(*net.UnixConn)
	if !ok {
		return r.c.Read(p)
	}
	// Descriptors queue in arrival order; FILDES pops one after reading the
	// dummy byte that carried it, so it is queued by then.
	oob := make([]byte, syscall.CmsgSpace(4*64))
	n, oobn, _, _, err := uc.ReadMsgUnix(p, oob)
	n = max(n, 0) // -1 on some errors
	if oobn > 0 {
		if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if fds, ferr := syscall.ParseUnixRights(&m); ferr == nil {
					r.mu.Lock()
					r.fds = append(r.fds, fds...)
					r.mu.Unlock()
				}
			}
		}
	}
	return n, err
}

func (r *fdReader) popFD() (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fds) == 0 {
		return -1, false
	}
	fd := r.fds[0]
	r.fds = r.fds[1:]
	return fd, true
}

func (r *fdReader) closeFDs() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fd := range r.fds {
		syscall.Close(fd)
	}
	r.fds = nil
}

// readFD reads a received descriptor's content from offset 0 (at most 64
// MiB) and closes it.
func readFD(fd int) (path string, data []byte) {
	path, _ = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	f := os.NewFile(uintptr(fd), "fildes")
	defer f.Close()
	data, _ = io.ReadAll(io.NewSectionReader(f, 0, 64<<20))
	return path, data
}
