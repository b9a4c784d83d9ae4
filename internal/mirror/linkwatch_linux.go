package mirror

import (
	"context"
	"encoding/binary"
	"os"

	"golang.org/x/sys/unix"
)

// watchName reports, on the returned channel, each time an entry named name
// is created in dir or renamed into it (how a set is published: a new
// symlink renamed over the verified link). It returns nil when inotify is
// not available (too many watches, a file system without it); the caller
// then relies on polling alone. The watch ends with ctx.
func watchName(ctx context.Context, dir, name string) <-chan struct{} {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "inotify "+dir) // non-blocking: reads wait in the poller
	ch := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close() // ends the Read below
	}()
	go func() {
		buf := make([]byte, 16<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for _, got := range inotifyNames(buf[:n]) {
				if got == name {
					select {
					case ch <- struct{}{}:
					default: // one notice pending is enough
					}
				}
			}
		}
	}()
	return ch
}

// inotifyNames returns the names in a buffer of struct inotify_event
// records (wd, mask, cookie, len, then len bytes of NUL-padded name); a
// truncated record ends the list.
func inotifyNames(b []byte) []string {
	var names []string
	for len(b) >= unix.SizeofInotifyEvent {
		l := int(binary.NativeEndian.Uint32(b[12:16]))
		if l < 0 || l > len(b)-unix.SizeofInotifyEvent {
			break
		}
		raw := b[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+l]
		for len(raw) > 0 && raw[len(raw)-1] == 0 {
			raw = raw[:len(raw)-1]
		}
		names = append(names, string(raw))
		b = b[unix.SizeofInotifyEvent+l:]
	}
	return names
}
