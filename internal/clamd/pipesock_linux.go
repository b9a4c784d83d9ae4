package clamd

import (
	"context"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSock is a Pipeline's socket on Linux: non-blocking, never registered
// with the runtime's network poller, and used only through raw system calls
// (no entersyscall) with ppoll(2) for the waits.
//
// Why: a scan sends one descriptor and reads one reply per file, tens of
// thousands of times, while clamd keeps every core busy. Through the poller
// each reply parked the goroutine, idled its processor and woke another
// thread, and each system call woke the runtime's monitor thread again
// (epoll_pwait, futex and nanosleep calls several times the number of
// files): 1.55 s of CPU for 20,000 files against clamdscan's 0.45 s, taken
// from clamd. Waiting in ppoll keeps the goroutine on its thread.
//
// Why it is safe: sendmsg and read on a non-blocking socket do not block,
// and ppoll waits at most the time it is given. The runtime's preemption
// signal (stop-the-world, or a goroutine running over 10 ms) interrupts
// ppoll with EINTR, which is never restarted; the next function call is a
// preemption point. So a waiting scan delays the garbage collector by a
// signal's round trip, not by clamd's scan time.
type rawSock struct{ fd int }

func dialPipeSock(ctx context.Context, path string) (pipeSock, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		if err != unix.EAGAIN { // a full listen backlog: try again
			break
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			return nil, context.Cause(ctx)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	return &rawSock{fd: fd}, nil
}

func (s *rawSock) sendmsg(ctx context.Context, b, oob []byte) error {
	for len(b) > 0 {
		n, e := rawSendmsg(s.fd, b, oob)
		switch e {
		case 0:
			b, oob = b[n:], nil
		case unix.EINTR:
		case unix.EAGAIN: // clamd is not reading: wait for room
			if ready, e := rawPoll(s.fd, unix.POLLOUT, pipelinePoll); e != 0 {
				return os.NewSyscallError("ppoll", e)
			} else if !ready && ctx.Err() != nil {
				return context.Cause(ctx)
			}
		default:
			return os.NewSyscallError("sendmsg", e)
		}
	}
	return nil
}

func (s *rawSock) read(b []byte, wait time.Duration) (int, error) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			if n == 0 {
				return 0, io.EOF
			}
			return int(n), nil
		case unix.EINTR:
		case unix.EAGAIN:
			ready, e := rawPoll(s.fd, unix.POLLIN, wait)
			if e != 0 {
				return 0, os.NewSyscallError("ppoll", e)
			}
			if !ready {
				return 0, os.ErrDeadlineExceeded
			}
		default:
			return 0, os.NewSyscallError("read", e)
		}
	}
}

func (s *rawSock) close() error {
	return os.NewSyscallError("close", unix.Close(s.fd))
}

func rawSendmsg(fd int, b, oob []byte) (int, unix.Errno) {
	iov := unix.Iovec{Base: &b[0]}
	iov.SetLen(len(b))
	msg := unix.Msghdr{Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	n, _, e := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL)
	return int(n), e
}

// rawPoll waits up to wait for events on fd. ready is false after the
// timeout or a signal (EINTR: the runtime wants the thread back).
//
//go:noinline
func rawPoll(fd int, events int16, wait time.Duration) (ready bool, errno unix.Errno) {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: events}}
	ts := unix.NsecToTimespec(int64(wait))
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if e == unix.EINTR {
		return false, 0
	}
	return n > 0, e
}
