package scan

import (
	"bufio"
	"bytes"
	"path/filepath"
	"strings"
)

// Mount is one line of /proc/PID/mountinfo, the fields the scanner uses.
type Mount struct {
	Root       string // the directory of the filesystem mounted here
	MountPoint string
	FSType     string
	Source     string
	Super      map[string]string // super options, e.g. lowerdir, upperdir
}

// ParseMountinfo parses /proc/PID/mountinfo (proc(5)); malformed lines are
// skipped.
func ParseMountinfo(b []byte) []Mount {
	var out []Mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		m := Mount{Root: unescapeMount(f[3]), MountPoint: unescapeMount(f[4]), FSType: f[sep+1], Source: unescapeMount(f[sep+2]), Super: map[string]string{}}
		if sep+3 < len(f) {
			for opt := range strings.SplitSeq(f[sep+3], ",") {
				k, v, _ := strings.Cut(opt, "=")
				m.Super[k] = unescapeMount(v)
			}
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space, \011,
// \012, \134) in mountinfo fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// OverlayLayers returns the host directories behind the overlay mounted at
// "/" in a container's mountinfo: upperdir, workdir and every lowerdir.
// Relative lowerdirs (Docker's "l/SHORTID" links, used when the option string
// would be too long) are taken relative to the overlay2 directory, which is
// upperdir's grandparent. The paths are as the mounting runtime saw them,
// normally the host's.
func OverlayLayers(mounts []Mount) []string {
	var root *Mount
	for i := range mounts {
		if mounts[i].MountPoint == "/" {
			root = &mounts[i] // the last mount on "/" is the one visible
		}
	}
	if root == nil || root.FSType != "overlay" {
		return nil
	}
	var out []string
	upper := root.Super["upperdir"]
	base := ""
	if upper != "" {
		out = append(out, upper)
		base = filepath.Dir(filepath.Dir(upper))
	}
	if w := root.Super["workdir"]; w != "" {
		out = append(out, w)
	}
	for l := range strings.SplitSeq(root.Super["lowerdir"], ":") {
		switch {
		case l == "":
		case filepath.IsAbs(l):
			out = append(out, l)
		case base != "":
			out = append(out, filepath.Join(base, l))
		}
	}
	return out
}
