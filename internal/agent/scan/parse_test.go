package scan

import (
	"slices"
	"strings"
	"testing"
)

func TestContainerID(t *testing.T) {
	const id = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8b"
	for _, tc := range []struct{ name, cgroup, want string }{
		{"docker cgroupfs v1", "12:pids:/docker/" + id + "\n11:memory:/docker/" + id + "\n", id},
		{"docker systemd v2", "0::/system.slice/docker-" + id + ".scope\n", id},
		{"containerd CRI systemd", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_5678.slice/cri-containerd-" + id + ".scope\n", id},
		{"kubepods cgroupfs", "4:memory:/kubepods/burstable/pod0b5f6f2a-1b2c-4d3e-8f9a-0b1c2d3e4f5a/" + id + "\n", id},
		{"cri-o", "0::/kubepods.slice/kubepods-pod1.slice/crio-" + id + ".scope\n", id},
		{"cri-o conmon is not the container", "0::/machine.slice/crio-conmon-" + id + ".scope\n", ""},
		{"podman", "0::/machine.slice/libpod-" + id + ".scope/container\n", id},
		{"nerdctl namespace", "0::/default/" + id + "\n", id},
		{"garden", "6:devices:/garden/7d1a6b2e-4c3f-4a5b-6c7d-8e9f0a1b2c3d\n", "7d1a6b2e-4c3f-4a5b-6c7d-8e9f0a1b2c3d"},
		{"lxc", "0::/lxc.payload.web01\n", "web01"},
		{"host session", "0::/user.slice/user-0.slice/session-3.scope\n", ""},
		{"root", "0::/\n", ""},
		{"upper-case hex is not an id", "0::/docker/" + strings.ToUpper(id) + "\n", ""},
		{"garbage", "no colons here\n::\n", ""},
	} {
		if got := ContainerID([]byte(tc.cgroup)); got != tc.want {
			t.Errorf("%s: ContainerID = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOverlayLayers(t *testing.T) {
	mi := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
610 590 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/aaa/diff,workdir=/var/lib/docker/overlay2/aaa/work
611 610 0:53 / /proc rw,nosuid - proc proc rw
612 610 8:1 /srv/my\040data /data rw - ext4 /dev/sda1 rw
`
	ms := ParseMountinfo([]byte(mi))
	if len(ms) != 4 || ms[3].Root != "/srv/my data" || ms[3].MountPoint != "/data" {
		t.Fatalf("parsed %+v", ms)
	}
	want := []string{"/var/lib/docker/overlay2/aaa/diff", "/var/lib/docker/overlay2/aaa/work", "/var/lib/docker/overlay2/l/ABC", "/var/lib/docker/overlay2/l/DEF"}
	if got := OverlayLayers(ms); !slices.Equal(got, want) {
		t.Errorf("layers %v, want %v", got, want)
	}
	rel := `610 590 0:52 / / rw - overlay overlay rw,lowerdir=l/ABC:l/DEF,upperdir=/var/lib/docker/overlay2/aaa/diff,workdir=/var/lib/docker/overlay2/aaa/work`
	want[2], want[3] = "/var/lib/docker/overlay2/l/ABC", "/var/lib/docker/overlay2/l/DEF"
	if got := OverlayLayers(ParseMountinfo([]byte(rel))); !slices.Equal(got, want) {
		t.Errorf("relative lowerdirs: %v, want %v", got, want)
	}
	if got := OverlayLayers(ms[:1]); got != nil {
		t.Errorf("ext4 root: layers %v", got)
	}
}

func TestConcurrency(t *testing.T) {
	for _, tc := range []struct{ threads, cpu, want int }{
		{4, 0, 4}, {4, 25, 1}, {4, 100, 1}, {4, 150, 2}, {1, 400, 1}, {8, 400, 4},
	} {
		if got := Concurrency(tc.threads, tc.cpu); got != tc.want {
			t.Errorf("Concurrency(%d, %d) = %d, want %d", tc.threads, tc.cpu, got, tc.want)
		}
	}
	if Concurrency(0, 0) < 1 {
		t.Error("Concurrency(0, 0) < 1")
	}
}

func TestParseHeaderVersion(t *testing.T) {
	h := make([]byte, 512)
	copy(h, "ClamAV-VDB:14 Jan 2024 09-10 -0500:27155:2050000:90:0123456789abcdef:sig:builder:1705241400")
	for i := range h {
		if h[i] == 0 {
			h[i] = ' '
		}
	}
	if v, ok := parseHeaderVersion(h); !ok || v != 27155 {
		t.Errorf("version %d %v", v, ok)
	}
	if _, ok := parseHeaderVersion([]byte("<html>not a database")); ok {
		t.Error("HTML parsed as a header")
	}
}

func FuzzContainerID(f *testing.F) {
	f.Add([]byte("0::/system.slice/docker-3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8b.scope\n"))
	f.Add([]byte("6:devices:/garden/handle\n1:name=systemd:/\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id := ContainerID(b)
		if id != "" && !strings.Contains(string(b), id) {
			t.Fatalf("id %q is not in the input", id)
		}
		if strings.ContainsAny(id, "/\n") {
			t.Fatalf("id %q holds a separator", id)
		}
	})
}

func FuzzMountinfo(f *testing.F) {
	f.Add([]byte("610 590 0:52 / / rw - overlay overlay rw,lowerdir=l/A:/x/B,upperdir=/x/u/diff,workdir=/x/u/work\n"))
	f.Add([]byte("612 610 8:1 /srv/my\\040data /data rw - ext4 /dev/sda1 rw\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms := ParseMountinfo(b)
		for _, l := range OverlayLayers(ms) {
			if l == "" {
				t.Fatal("empty layer path")
			}
		}
		parseHeaderVersion(b)
	})
}
