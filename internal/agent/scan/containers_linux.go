package scan

import (
	"fmt"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/avfleet/avfleet/internal/agent/quarantine"
)

// Container is one distinct root filesystem among the host's processes.
type Container struct {
	ID     string          // from the cgroup path; "pid-N" when no runtime named it
	PID    int             // the lowest PID with this root: the one scanned through
	Root   quarantine.Root // mount namespace and the root directory's device and inode
	Path   string          // /proc/PID/root
	Layers []string        // host directories of its overlay (upper, work, lower)
	rootFD int             // the root, held open so the scan survives the PID exiting
}

// Close releases the open root.
func (c *Container) Close() error {
	if c.rootFD < 0 {
		return nil
	}
	err := unix.Close(c.rootFD)
	c.rootFD = -1
	return err
}

// DiscoverContainers finds every running container on the host without
// asking a runtime: the distinct roots among proc/PID/root, keyed by mount
// namespace and the root's device and inode. A process whose root is the
// host's (PID 1's) is not a container, even in its own mount namespace
// (systemd's PrivateTmp services); a chroot without a new namespace is. The
// caller closes each Container.
func DiscoverContainers(proc string) ([]*Container, error) {
	// The host's root is init's. Where init's root cannot be read (an init
	// protected from ptrace-style access, as in some VMs' agents), the
	// agent's own root stands in: the agent runs on the host then.
	var host unix.Stat_t
	if err := unix.Stat(proc+"/1/root", &host); err != nil {
		if err := unix.Stat("/", &host); err != nil {
			return nil, fmt.Errorf("find containers: stat /: %w", err)
		}
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("find containers: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	seen := map[quarantine.Root]bool{}
	var out []*Container
	for _, pid := range pids {
		base := proc + "/" + strconv.Itoa(pid)
		var ns, root unix.Stat_t
		// Processes that exit meanwhile, kernel threads and zombies fail
		// here and are passed over.
		if unix.Stat(base+"/ns/mnt", &ns) != nil || unix.Stat(base+"/root", &root) != nil {
			continue
		}
		if root.Dev == host.Dev && root.Ino == host.Ino {
			continue
		}
		key := quarantine.Root{Dev: root.Dev, Ino: root.Ino, MntNS: ns.Ino}
		if seen[key] {
			continue
		}
		fd, err := unix.Open(base+"/root", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Dev != root.Dev || st.Ino != root.Ino {
			unix.Close(fd) // the PID was reused between the two looks
			continue
		}
		seen[key] = true
		c := &Container{PID: pid, Root: key, Path: base + "/root", rootFD: fd}
		if cg, err := os.ReadFile(base + "/cgroup"); err == nil {
			c.ID = ContainerID(cg)
		}
		if c.ID == "" {
			c.ID = "pid-" + strconv.Itoa(pid)
		}
		if mi, err := os.ReadFile(base + "/mountinfo"); err == nil {
			c.Layers = OverlayLayers(ParseMountinfo(mi))
		}
		out = append(out, c)
	}
	return out, nil
}
