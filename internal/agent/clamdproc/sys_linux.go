package clamdproc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// gateScript holds clamd back until the supervisor has put the process in
// its cgroup: sh waits for a line on fd 3, closes it, and execs clamd under
// the same pid. Memory is charged to the cgroup a process is in when it
// allocates, and on Linux 6.x with cgroup v1 even that proved unreliable for
// a process moved after exec (a 4 MiB limit killed clamd in one start out of
// four); moved before exec, clamd's whole life is charged there.
const gateScript = `read -r _ <&3 || exit 111; exec 3<&-; exec "$0" "$@"`

// startCmd starts clamd so that it cannot outlive the agent: the kernel sends
// it SIGKILL when the thread that forked it ends (Pdeathsig, kept across
// exec). That is the thread, not the process, so the fork happens on a locked
// OS thread that is kept until clamd has exited (alive is closed); otherwise
// Go could retire that thread (a goroutine exiting while locked) and kill a
// healthy clamd. Setpgid keeps a terminal's Ctrl-C away from clamd: the
// agent stops it.
//
// With cgroupDir (cgroup v2, Linux 5.7+) clamd is created inside it
// (CLONE_INTO_CGROUP). Otherwise, when gate is set, it starts behind
// gateScript; release(true) lets it exec once OnStart has placed it,
// release(false) makes it exit without running clamd.
func startCmd(s startSpec) (*exec.Cmd, func(ok bool) error, error) {
	type result struct {
		cmd     *exec.Cmd
		release func(ok bool) error
		err     error
	}
	res := make(chan result)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd, release, err := startOnThisThread(s)
		res <- result{cmd, release, err}
		if err == nil {
			<-s.alive
		}
	}()
	r := <-res
	return r.cmd, r.release, r.err
}

func startOnThisThread(s startSpec) (*exec.Cmd, func(ok bool) error, error) {
	attr := func() *syscall.SysProcAttr {
		return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	}
	if s.cgroupDir != "" {
		dir, err := os.Open(s.cgroupDir)
		if err == nil {
			cmd := s.command(s.bin, s.args...)
			cmd.SysProcAttr = attr()
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
			err = cmd.Start()
			dir.Close()
			if err == nil {
				return cmd, nil, nil
			}
		}
		s.log.Warn("could not start clamd inside its cgroup (needs cgroup v2 and Linux 5.7); starting it outside and moving it in",
			"cgroup", s.cgroupDir, "err", err)
	}
	if s.gate {
		if sh, err := exec.LookPath("/bin/sh"); err == nil {
			gr, gw, err := os.Pipe()
			if err != nil {
				return nil, nil, err
			}
			cmd := s.command(sh, append([]string{"-c", gateScript, s.bin}, s.args...)...)
			cmd.ExtraFiles = []*os.File{gr}
			cmd.SysProcAttr = attr()
			err = cmd.Start()
			gr.Close()
			if err != nil {
				gw.Close()
				return nil, nil, err
			}
			release := func(ok bool) error {
				defer gw.Close() // without the line, sh exits 111 and clamd never runs
				if !ok {
					return nil
				}
				_, err := gw.Write([]byte("go\n"))
				return err
			}
			return cmd, release, nil
		}
		s.log.Warn("no /bin/sh to hold clamd until it is in its cgroup; moving it in right after start (what it allocates before is not limited)")
	}
	cmd := s.command(s.bin, s.args...)
	cmd.SysProcAttr = attr()
	return cmd, nil, cmd.Start()
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// cgroupOOMReader finds the memory cgroup pid is in and returns a reader of
// its oom_kill counter: memory.oom_control (cgroup v1, Linux 4.13+) or
// memory.events (v2). nil when neither is readable.
func cgroupOOMReader(pid int) func() (uint64, error) {
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	v1Mount, v2Mount := cgroupMounts(mi)
	var candidates []string
	for _, line := range strings.Split(string(cg), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "" && v2Mount != "":
			candidates = append(candidates, filepath.Join(v2Mount, parts[2], "memory.events"))
		case v1Mount != "" && hasController(parts[1], "memory"):
			// v1 first: on a hybrid host the v2 tree has no memory controller.
			candidates = append([]string{filepath.Join(v1Mount, parts[2], "memory.oom_control")}, candidates...)
		}
	}
	for _, f := range candidates {
		read := func() (uint64, error) { return readKey(f, "oom_kill") }
		if _, err := read(); err == nil {
			return read
		}
	}
	return nil
}

// cgroupMounts returns the mount points of the v1 memory controller and of
// the cgroup v2 hierarchy from /proc/self/mountinfo.
func cgroupMounts(mountinfo []byte) (v1Memory, v2 string) {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 > len(f) {
			continue
		}
		mnt, fstype, opts := f[4], f[sep+1], f[sep+3]
		switch fstype {
		case "cgroup2":
			if v2 == "" {
				v2 = mnt
			}
		case "cgroup":
			if v1Memory == "" && hasController(opts, "memory") {
				v1Memory = mnt
			}
		}
	}
	return v1Memory, v2
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

func readKey(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}
