package scan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// target is one root of a walk: a configured path, or a container's root.
type target struct {
	path string     // opened as is: a configured path, or /proc/PID/root
	ctr  *Container // nil on the host
}

// dirHandle is an open directory. Every queued file holds a reference, so
// the directory stays open until its files are scanned: workers open them
// relative to it, never by path.
type dirHandle struct {
	fd    int
	path  string // as the agent sees it
	cpath string // inside the container ("" on the host)
	refs  atomic.Int32
}

func newDir(fd int, path, cpath string) *dirHandle {
	d := &dirHandle{fd: fd, path: path, cpath: cpath}
	d.refs.Store(1)
	return d
}

func (d *dirHandle) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// job is one regular file for a worker.
type job struct {
	dir         *dirHandle
	name        string
	path, cpath string
	ctr         *Container
}

// walker walks targets depth first on one goroutine, openat by openat,
// never following a symlink. The scan's walker queues files for the
// workers; the counting walker (count) only adds up files and bytes.
type walker struct {
	r       *run
	count   bool
	visited map[fileID]struct{}
	bufs    [][]byte // one getdents buffer per depth
	depth   int

	nFiles, nBytes int64
}

func newWalker(r *run, count bool) *walker {
	return &walker{r: r, count: count, visited: map[fileID]struct{}{}}
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// skip records a skip for the scan's walker; the counting walker keeps quiet.
func (w *walker) skip(path, cpath string, ctr *Container, reason string, err error) {
	if !w.count {
		w.r.skip(path, cpath, ctr, reason, err)
	}
}

func (w *walker) excluded(path, cpath string, dir bool, ctr *Container) bool {
	s := path
	if ctr != nil {
		s = cpath // a container's paths are matched as seen inside it
	}
	for _, re := range w.r.s.exclude {
		if re.MatchString(s) || dir && re.MatchString(s+"/") {
			return true
		}
	}
	return false
}

func (w *walker) walk(t target) {
	var fd int
	var err error
	cpath := ""
	if t.ctr != nil {
		fd, err = unix.FcntlInt(uintptr(t.ctr.rootFD), unix.F_DUPFD_CLOEXEC, 0)
		cpath = "/"
	} else {
		// The configured path itself may go through symlinks (the operator
		// wrote it); nothing below it will.
		fd, err = unix.Open(t.path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	}
	if err != nil {
		reason := ReasonUnreadable
		if errors.Is(err, unix.ENOENT) {
			reason = ReasonMissing
		}
		w.skip(t.path, cpath, t.ctr, reason, err)
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		w.skip(t.path, cpath, t.ctr, ReasonUnreadable, err)
		return
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if w.excluded(t.path, cpath, true, t.ctr) {
			unix.Close(fd)
			w.skip(t.path, cpath, t.ctr, ReasonExcluded, nil)
			return
		}
		if reason := w.seen(fileID{st.Dev, st.Ino}); reason != "" {
			unix.Close(fd)
			w.skip(t.path, cpath, t.ctr, reason, nil)
			return
		}
		w.walkDir(newDir(fd, t.path, cpath), t.ctr, st.Dev, st.Dev)
	case unix.S_IFREG:
		unix.Close(fd)
		// A file named on its own: hold its directory like any other file's.
		dfd, err := unix.Open(filepath.Dir(t.path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			w.skip(t.path, "", nil, ReasonUnreadable, err)
			return
		}
		d := newDir(dfd, filepath.Dir(t.path), "")
		w.file(d, filepath.Base(t.path), t.path, "", nil)
		d.release()
	default:
		unix.Close(fd)
		w.skip(t.path, cpath, t.ctr, typeReason(st.Mode), nil)
	}
}

// seen says why a directory must not be entered ("" if it may be), and
// marks it entered: a directory reached twice (a bind mount, a container's
// root through the host's path) is walked once.
func (w *walker) seen(id fileID) string {
	if reason, ok := w.r.skipDirs[id]; ok {
		return reason
	}
	if _, ok := w.visited[id]; ok {
		return ReasonAlreadyScanned
	}
	w.visited[id] = struct{}{}
	return ""
}

const direntBuf = 32 << 10

// walkDir reads d with getdents and handles each entry; it releases d.
func (w *walker) walkDir(d *dirHandle, ctr *Container, rootDev, dev uint64) {
	defer d.release()
	if w.depth == len(w.bufs) {
		w.bufs = append(w.bufs, make([]byte, direntBuf))
	}
	buf := w.bufs[w.depth]
	w.depth++
	defer func() { w.depth-- }()
	for {
		n, err := unix.Getdents(d.fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			w.skip(d.path, d.cpath, ctr, ReasonUnreadable, fmt.Errorf("read directory: %w", err))
			return
		}
		if n <= 0 {
			return
		}
		// Names are copied out before recursing: deeper levels use other buffers.
		for off := 0; off+19 <= n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen < 19 || off+reclen > n {
				break
			}
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			if string(name) == "." || string(name) == ".." || len(name) == 0 {
				continue
			}
			if w.r.ctx.Err() != nil {
				return
			}
			w.entry(d, string(name), typ, ctr, rootDev, dev)
		}
	}
}

func dtype(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	case unix.S_IFBLK:
		return unix.DT_BLK
	}
	return unix.DT_CHR
}

func (w *walker) entry(d *dirHandle, name string, typ uint8, ctr *Container, rootDev, dev uint64) {
	path, cpath := join(d.path, name), ""
	if ctr != nil {
		cpath = join(d.cpath, name)
	}
	if typ == unix.DT_UNKNOWN { // some filesystems do not fill in d_type
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			w.skip(path, cpath, ctr, openReason(err), err)
			return
		}
		typ = dtype(st.Mode)
	}
	switch typ {
	case unix.DT_DIR:
		w.dir(d, name, path, cpath, ctr, rootDev, dev)
	case unix.DT_REG:
		w.file(d, name, path, cpath, ctr)
	case unix.DT_LNK:
		w.skip(path, cpath, ctr, ReasonSymlink, nil)
	case unix.DT_FIFO:
		w.skip(path, cpath, ctr, ReasonFIFO, nil)
	case unix.DT_SOCK:
		w.skip(path, cpath, ctr, ReasonSocket, nil)
	default:
		w.skip(path, cpath, ctr, ReasonDevice, nil)
	}
}

func (w *walker) file(d *dirHandle, name, path, cpath string, ctr *Container) {
	if w.excluded(path, cpath, false, ctr) {
		w.skip(path, cpath, ctr, ReasonExcluded, nil)
		return
	}
	if w.count {
		var st unix.Stat_t
		if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			w.nFiles++
			w.nBytes += st.Size
		}
		return
	}
	d.refs.Add(1)
	if w.r.pipe != nil {
		w.r.pipe.submit(&job{dir: d, name: name, path: path, cpath: cpath, ctr: ctr})
		return
	}
	select {
	case w.r.jobs <- &job{dir: d, name: name, path: path, cpath: cpath, ctr: ctr}:
	case <-w.r.ctx.Done():
		d.release()
	}
}

func (w *walker) dir(d *dirHandle, name, path, cpath string, ctr *Container, rootDev, dev uint64) {
	if w.excluded(path, cpath, true, ctr) {
		w.skip(path, cpath, ctr, ReasonExcluded, nil)
		return
	}
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ENOTDIR) {
		// Replaced by something else since the directory was read.
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			w.skip(path, cpath, ctr, openReason(err), err)
		} else if t := dtype(st.Mode); t != unix.DT_DIR {
			w.entry(d, name, t, ctr, rootDev, dev)
		}
		return
	}
	if err != nil {
		w.skip(path, cpath, ctr, openReason(err), err)
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		w.skip(path, cpath, ctr, ReasonUnreadable, err)
		return
	}
	if st.Dev != dev {
		if w.r.s.cfg.OneFilesystem && st.Dev != rootDev {
			unix.Close(fd)
			w.skip(path, cpath, ctr, ReasonOtherFS, nil)
			return
		}
		if fs := pseudoFS(fd); fs != "" {
			unix.Close(fd)
			w.skip(path, cpath, ctr, ReasonPseudoFS, errors.New(fs))
			return
		}
	}
	if reason := w.seen(fileID{st.Dev, st.Ino}); reason != "" {
		unix.Close(fd)
		w.skip(path, cpath, ctr, reason, nil)
		return
	}
	w.walkDir(newDir(fd, path, cpath), ctr, rootDev, st.Dev)
}

// pseudoFS names the kernel filesystem fd is on when it holds no files
// worth scanning (and some that must not be read: /proc/kcore, autofs
// triggers), or returns "".
func pseudoFS(fd int) string {
	var s unix.Statfs_t
	if unix.Fstatfs(fd, &s) != nil {
		return ""
	}
	switch uint64(s.Type) {
	case unix.PROC_SUPER_MAGIC:
		return "proc"
	case unix.SYSFS_MAGIC:
		return "sysfs"
	case unix.DEVPTS_SUPER_MAGIC:
		return "devpts"
	case unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC:
		return "cgroup"
	case unix.DEBUGFS_MAGIC:
		return "debugfs"
	case unix.TRACEFS_MAGIC:
		return "tracefs"
	case unix.SECURITYFS_MAGIC:
		return "securityfs"
	case unix.BPF_FS_MAGIC:
		return "bpf"
	case unix.PSTOREFS_MAGIC:
		return "pstore"
	case unix.EFIVARFS_MAGIC:
		return "efivarfs"
	case unix.AUTOFS_SUPER_MAGIC:
		return "autofs"
	case unix.NSFS_MAGIC:
		return "nsfs"
	case unix.SELINUX_MAGIC:
		return "selinuxfs"
	case unix.HUGETLBFS_MAGIC:
		return "hugetlbfs"
	case 0x62656570: // configfs
		return "configfs"
	case 0x65735543: // fusectl
		return "fusectl"
	case 0x19800202: // mqueue
		return "mqueue"
	case 0x42494e4d: // binfmt_misc
		return "binfmt_misc"
	}
	return ""
}
