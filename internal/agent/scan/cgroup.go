package scan

import (
	"bufio"
	"bytes"
	"strings"
)

// ContainerID finds a container's id in the content of /proc/PID/cgroup,
// whatever runtime made it: Docker (cgroupfs "/docker/ID", systemd
// "docker-ID.scope"), containerd and CRI ("cri-containerd-ID.scope",
// kubepods ".../podUID/ID", nerdctl "/NAMESPACE/ID"), CRI-O ("crio-ID.scope"),
// Podman ("libpod-ID.scope"), LXC ("lxc.payload.NAME", "/lxc/NAME") and
// Garden ("/garden/HANDLE"). It returns "" when no line names one.
func ContainerID(cgroup []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cgroup))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if id := idFromPath(parts[2]); id != "" {
			return id
		}
	}
	return ""
}

var scopePrefixes = []string{"docker-", "cri-containerd-", "crio-", "libpod-", "containerd-", "cri-o-"}

func idFromPath(p string) string {
	comps := strings.Split(strings.Trim(p, "/"), "/")
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		if i > 0 && (comps[i-1] == "garden" || comps[i-1] == "lxc") && c != "" {
			return c
		}
		if name, ok := strings.CutPrefix(c, "lxc.payload."); ok && name != "" {
			return name
		}
		if strings.HasPrefix(c, "crio-conmon-") || strings.HasPrefix(c, "libpod-conmon-") {
			continue // the runtime's monitor, not the container
		}
		c = strings.TrimSuffix(c, ".scope")
		for _, pre := range scopePrefixes {
			if rest, ok := strings.CutPrefix(c, pre); ok {
				c = rest
				break
			}
		}
		if isHexID(c) {
			return c
		}
	}
	return ""
}

func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}
