package limits

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group is a set of processes under one CPU and memory limit.
type Group struct {
	cfg  Config
	mode Mode

	mu      sync.Mutex
	created []made            // cgroup directories made by New, removed by Close (leaf first)
	procs   []procDir         // where a pid is written to join the group
	cpuDir  string            // cpu.stat (v2) / unused (v1)
	acctDir string            // cpuacct.usage (v1)
	memDir  string            // memory.* files
	origin  map[int][]procDir // pid -> the cgroups it came from, to move it back on Close
	closed  bool
	deleg   *delegation // cgroup v2 inside the agent's own (delegated) cgroup
	placed  string      // where the group is and why, for the agent's log

	members procCPU // ModeNice: the processes added, for the pacer
	pacer   *Pacer  // ModeNice with a CPU limit; nil otherwise
}

// made is a directory New created; a shared one (avfleet/) may hold other
// groups and is removed only when empty.
type made struct {
	dir    string
	shared bool
}

// procDir is one cgroup directory and the hierarchy it belongs to.
type procDir struct {
	dir  string
	ctrl string // v1 controller ("cpu", "cpuacct", "memory"); "" for v2
	root string // the hierarchy's root directory
}

// New creates the group and writes its limits. The order of preference is
// cgroup v2 (with the cpu and memory controllers), then cgroup v1; when
// neither can be written it returns a ModeNice group and a warning saying
// why, for the agent to log. err is for real failures (bad config, a
// kernel refusing a value).
func New(c Config) (g *Group, warning error, err error) {
	if err := c.check(); err != nil {
		return nil, nil, err
	}
	if c.rmdir == nil {
		c.rmdir = unix.Rmdir
	}
	if c.selfCgroup == "" {
		c.selfCgroup = "/proc/self/cgroup"
	}
	if c.pid == 0 {
		c.pid = os.Getpid()
	}
	g = &Group{cfg: c, origin: map[int][]procDir{}}

	var why []string
	for _, try := range []struct {
		usable func(root string) (bool, string)
		setup  func() error
		mode   Mode
	}{
		{v2Usable, g.setupV2, ModeCgroup2},
		{v1Usable, g.setupV1, ModeCgroup1},
	} {
		ok, reason := try.usable(c.Root)
		if !ok {
			why = append(why, reason)
			continue
		}
		err := try.setup()
		if err == nil {
			g.mode = try.mode
			return g, nil, nil
		}
		g.removeCreated()
		if !accessError(err) {
			return nil, nil, err
		}
		why = append(why, err.Error())
	}

	g.created, g.procs, g.cpuDir, g.acctDir, g.memDir = nil, nil, "", "", ""
	if !c.limited() {
		g.mode = ModeNone
		return g, nil, nil
	}
	g.mode = ModeNice
	if c.CPUPercent > 0 {
		g.pacer = newPacer(c.CPUPercent, g.members.read)
	}
	return g, fmt.Errorf("limits: cannot use a cgroup (%s): clamd and scans run at nice 10 with idle I/O priority; limits.cpu_percent is kept by pacing scheduled scans (clamd's reloads and on-demand scans are not held back); limits.memory_bytes is NOT enforced", strings.Join(why, "; ")), nil
}

// accessError reports whether err means "this process may not write
// cgroups here" (fall back) rather than "something is wrong" (fail).
func accessError(err error) bool {
	return errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) ||
		// v2: enabling controllers where processes live (a container's
		// cgroup namespace root) is refused with EBUSY.
		errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.ENOTSUP) ||
		errors.Is(err, syscall.ENOENT)
}

// v2Usable reports whether root is a cgroup v2 hierarchy with the cpu and
// memory controllers available.
func v2Usable(root string) (bool, string) {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return false, "no cgroup v2 at " + root
	}
	have := strings.Fields(string(b))
	var missing []string
	for _, c := range []string{"cpu", "memory"} {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return false, fmt.Sprintf("cgroup v2 at %s lacks the %s controller", root, strings.Join(missing, " and "))
	}
	return true, ""
}

// v1Usable reports whether the cpu and memory v1 hierarchies are mounted.
func v1Usable(root string) (bool, string) {
	for _, f := range []string{"cpu/cpu.cfs_quota_us", "memory/memory.limit_in_bytes"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			return false, "no cgroup v1 " + strings.Split(f, "/")[0] + " hierarchy at " + filepath.Join(root, filepath.Dir(f))
		}
	}
	return true, ""
}

// setupV2 prefers the cgroup the agent was started in, when it is the
// agent's to manage (systemd's Delegate=): systemd owns the rest of the
// tree, and a cgroup made behind its back at the root is outside the
// service's accounting. Otherwise it creates avfleet/NAME at the root.
func (g *Group) setupV2() error {
	own, why := g.delegated()
	if own != "" {
		err := g.setupV2Delegated(own)
		if err == nil {
			g.placed = "in the agent's delegated cgroup " + own + " (the agent runs in " + delegGroupLeaf + "/ with clamd)"
			return nil
		}
		rerr := g.removeCreated()
		uerr := g.undoDelegation()
		g.procs, g.cpuDir, g.memDir = nil, "", ""
		if !accessError(err) || rerr != nil || uerr != nil {
			return errors.Join(err, rerr, uerr)
		}
		why = err.Error()
	}
	g.placed = "at the cgroup root, not in the agent's own cgroup: " + why
	root := g.cfg.Root
	parent := filepath.Join(root, "avfleet")
	leaf := filepath.Join(parent, g.cfg.Name)
	// A child can only use a controller its parent enabled for it.
	if _, err := enableControllers(root); err != nil {
		return err
	}
	if err := g.mkdir(parent, true); err != nil {
		return err
	}
	if _, err := enableControllers(parent); err != nil {
		return err
	}
	if err := g.mkdir(leaf, false); err != nil {
		return err
	}
	if err := g.writeLimits(leaf); err != nil {
		return err
	}
	g.procs = []procDir{{dir: leaf, root: root}}
	g.cpuDir, g.memDir = leaf, leaf
	return nil
}

// writeLimits writes cpu.max and memory.max of a v2 group.
func (g *Group) writeLimits(leaf string) error {
	cpuMax := "max"
	if q := g.cfg.cpuQuota(); q > 0 {
		cpuMax = strconv.FormatInt(q, 10)
	}
	if err := writeFile(filepath.Join(leaf, "cpu.max"), fmt.Sprintf("%s %d", cpuMax, Period.Microseconds())); err != nil {
		return err
	}
	mem := "max"
	if g.cfg.MemoryBytes > 0 {
		mem = strconv.FormatInt(g.cfg.MemoryBytes, 10)
	}
	return writeFile(filepath.Join(leaf, "memory.max"), mem)
}

// enableControllers makes cpu and memory available to dir's children and
// returns the ones it turned on.
func enableControllers(dir string) ([]string, error) {
	f := filepath.Join(dir, "cgroup.subtree_control")
	b, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f, err)
	}
	have := strings.Fields(string(b))
	var add, names []string
	for _, c := range []string{"cpu", "memory"} {
		if !slices.Contains(have, c) {
			add = append(add, "+"+c)
			names = append(names, c)
		}
	}
	if len(add) == 0 {
		return nil, nil
	}
	return names, writeFile(f, strings.Join(add, " "))
}

func (g *Group) setupV1() error {
	seen := map[string]bool{}
	for _, ctrl := range []string{"cpu", "cpuacct", "memory"} {
		base := filepath.Join(g.cfg.Root, ctrl)
		real, err := filepath.EvalSymlinks(base)
		if err != nil {
			if ctrl == "cpuacct" { // accounting is optional; limits are not
				continue
			}
			return fmt.Errorf("cgroup v1 %s hierarchy: %w", ctrl, err)
		}
		leaf := filepath.Join(base, "avfleet", g.cfg.Name)
		if seen[real] { // co-mounted (cpu,cpuacct): one directory serves both
			continue
		}
		seen[real] = true
		if err := g.mkdir(filepath.Join(base, "avfleet"), true); err != nil {
			return err
		}
		if err := g.mkdir(leaf, false); err != nil {
			return err
		}
		g.procs = append(g.procs, procDir{dir: leaf, ctrl: ctrl, root: base})
	}
	for _, p := range g.procs {
		if _, err := os.Stat(filepath.Join(p.dir, "cpu.cfs_quota_us")); err == nil && g.cpuDir == "" {
			g.cpuDir = p.dir
		}
		if _, err := os.Stat(filepath.Join(p.dir, "cpuacct.usage")); err == nil && g.acctDir == "" {
			g.acctDir = p.dir
		}
		if _, err := os.Stat(filepath.Join(p.dir, "memory.limit_in_bytes")); err == nil && g.memDir == "" {
			g.memDir = p.dir
		}
	}
	if g.cpuDir == "" || g.memDir == "" {
		return fmt.Errorf("cgroup v1: cpu.cfs_quota_us or memory.limit_in_bytes missing under %s", g.cfg.Root)
	}
	if err := writeFile(filepath.Join(g.cpuDir, "cpu.cfs_period_us"), strconv.FormatInt(Period.Microseconds(), 10)); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(g.cpuDir, "cpu.cfs_quota_us"), strconv.FormatInt(g.cfg.cpuQuota(), 10)); err != nil {
		return err
	}
	mem := int64(-1)
	if g.cfg.MemoryBytes > 0 {
		mem = g.cfg.MemoryBytes
	}
	return writeFile(filepath.Join(g.memDir, "memory.limit_in_bytes"), strconv.FormatInt(mem, 10))
}

// mkdir creates a cgroup directory and remembers it for Close; one left
// behind by an agent that crashed is reused.
func (g *Group) mkdir(dir string, shared bool) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		if !shared {
			g.created = append(g.created, made{dir, shared}) // ours, from a previous run
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	g.created = append(g.created, made{dir, shared})
	return nil
}

func writeFile(path, value string) error {
	// cgroup files exist once the directory does; O_CREATE is only for
	// the fake cgroupfs of the tests, where it is harmless.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// Mode says how the group limits its processes.
// Pacer is what keeps scheduled scans to limits.cpu_percent in ModeNice
// (see Pacer), over the CPU time of the processes added to the group; nil,
// which does not pace, in every other mode and for a nil Group.
func (g *Group) Pacer() *Pacer {
	if g == nil {
		return nil
	}
	return g.pacer
}

func (g *Group) Mode() Mode { return g.mode }

// Placement says where a cgroup v2 group was made and, when not in the
// agent's own cgroup, why not ("" for other modes).
func (g *Group) Placement() string {
	if g.mode != ModeCgroup2 {
		return ""
	}
	return g.placed
}

// Paths are the cgroup directories of the group (none in ModeNice/ModeNone).
func (g *Group) Paths() []string {
	var p []string
	for _, d := range g.procs {
		p = append(p, d.dir)
	}
	return p
}

// Add puts the process pid, with all its threads, into the group. In
// ModeNice it lowers its CPU and I/O priority instead; in ModeNone it does
// nothing. Add a child right after starting it: memory it allocated before
// joining is not charged to the group.
func (g *Group) Add(pid int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("limits: add pid %d: group is closed", pid)
	}
	switch g.mode {
	case ModeNone:
		return nil
	case ModeNice:
		g.members.add(pid)
		return deprioritize(pid)
	}
	if _, ok := g.origin[pid]; !ok {
		g.origin[pid] = originOf(pid, g.procs)
	}
	for _, p := range g.procs {
		if err := writeFile(filepath.Join(p.dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("limits: add pid %d: %w", pid, err)
		}
	}
	return nil
}

// AddSelf puts the agent itself into the group, so that its scanning work
// (walking directories, opening files, talking to clamd) is limited with
// clamd's: DESIGN's limits are "for clamd + scans". In ModeNice the agent's
// threads get nice 10 and the idle I/O class. In a delegated cgroup the
// agent is there already. Close moves it back.
func (g *Group) AddSelf() error {
	if g.deleg != nil {
		return nil
	}
	return g.Add(g.cfg.pid)
}

// originOf reads the cgroups pid is in now (/proc/PID/cgroup), one per
// hierarchy of procs, so Close can put a still-running process back.
func originOf(pid int, procs []procDir) []procDir {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil
	}
	var out []procDir
	for _, p := range procs {
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			match := p.ctrl == "" && parts[0] == "0" && parts[1] == "" ||
				p.ctrl != "" && slices.Contains(strings.Split(parts[1], ","), p.ctrl)
			if match {
				out = append(out, procDir{dir: filepath.Join(p.root, parts[2]), ctrl: p.ctrl, root: p.root})
				break
			}
		}
	}
	return out
}

// Stats reads the group's CPU time, memory use and OOM kills.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	switch g.mode {
	case ModeCgroup2:
		usec, err := readKey(filepath.Join(g.cpuDir, "cpu.stat"), "usage_usec")
		if err != nil {
			return s, err
		}
		s.CPU = time.Duration(usec) * time.Microsecond
		if s.OOMKills, err = readKey(filepath.Join(g.memDir, "memory.events"), "oom_kill"); err != nil {
			return s, err
		}
		mem, err := readUint(filepath.Join(g.memDir, "memory.current"))
		if err != nil {
			return s, err
		}
		s.MemoryBytes = int64(mem)
	case ModeCgroup1:
		if g.acctDir != "" {
			ns, err := readUint(filepath.Join(g.acctDir, "cpuacct.usage"))
			if err != nil {
				return s, err
			}
			s.CPU = time.Duration(ns)
		}
		var err error
		// oom_kill is in memory.oom_control since Linux 4.13.
		if s.OOMKills, err = readKey(filepath.Join(g.memDir, "memory.oom_control"), "oom_kill"); err != nil {
			return s, err
		}
		mem, err := readUint(filepath.Join(g.memDir, "memory.usage_in_bytes"))
		if err != nil {
			return s, err
		}
		s.MemoryBytes = int64(mem)
	default:
		return s, ErrNoCgroup
	}
	return s, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("limits: %w", err)
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("limits: %s: %w", path, err)
	}
	return v, nil
}

// readKey reads "key value" from a flat-keyed cgroup file.
func readKey(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("limits: %w", err)
	}
	v, ok, err := parseKey(b, key)
	if err != nil {
		return 0, fmt.Errorf("limits: %s: %w", path, err)
	}
	if !ok {
		return 0, fmt.Errorf("limits: %s has no %s line", path, key)
	}
	return v, nil
}

func parseKey(b []byte, key string) (uint64, bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == key {
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("%s: %w", key, err)
			}
			return v, true, nil
		}
	}
	return 0, false, sc.Err()
}

// Close moves any process still in the group back where it came from and
// removes the cgroup directories New created. It is safe to call twice.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	if g.mode != ModeCgroup1 && g.mode != ModeCgroup2 {
		return nil
	}
	var errs []error
	for _, p := range g.procs {
		if g.deleg != nil {
			break // undoDelegation moves everyone back to the agent's own cgroup
		}
		b, err := os.ReadFile(filepath.Join(p.dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			dest := g.originDir(pid, p)
			if err := writeFile(filepath.Join(dest, "cgroup.procs"), f); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("limits: move pid %d out of %s: %w", pid, p.dir, err))
			}
		}
	}
	if err := g.removeCreated(); err != nil {
		errs = append(errs, err)
	}
	if err := g.undoDelegation(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// originDir is where Close puts pid back in p's hierarchy: where it was
// before Add; for a process started from inside the group (clamd, forked by
// an agent already in it), where the agent came from; else the root.
func (g *Group) originDir(pid int, p procDir) string {
	for _, id := range []int{pid, g.cfg.pid} {
		for _, o := range g.origin[id] {
			if o.root == p.root && o.dir != p.dir {
				return o.dir
			}
		}
	}
	return p.root
}

// removeCreated removes the directories New created, leaves first. The
// kernel keeps a cgroup busy for a moment after its last process exits,
// so EBUSY is retried briefly.
func (g *Group) removeCreated() error {
	var errs []error
	for i := len(g.created) - 1; i >= 0; i-- {
		if g.created[i].shared {
			// Another group of ours may still live there: only an empty
			// one goes.
			_ = g.cfg.rmdir(g.created[i].dir)
			continue
		}
		if err := g.rmdirRetry(g.created[i].dir); err != nil {
			errs = append(errs, err)
		}
	}
	g.created = nil
	return errors.Join(errs...)
}

// errNoProcess is what writing a pid that has exited to cgroup.procs gives.
var errNoProcess = syscall.ESRCH

// rmdirRetry removes a cgroup directory, retrying EBUSY briefly.
func (g *Group) rmdirRetry(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := g.cfg.rmdir(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		return fmt.Errorf("limits: remove cgroup %s: %w", dir, err)
	}
}

const (
	ioprioClassIdle  = 3
	ioprioClassShift = 13
	ioprioWhoProcess = 1
	niceLevel        = 10
)

// deprioritize sets nice 10 (unless the process is already nicer) and the
// idle I/O class on every thread of pid: on Linux both are per thread.
func deprioritize(pid int) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("limits: lower priority of pid %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if n, err := threadNice(pid, tid); err != nil || n < niceLevel {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, niceLevel); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("limits: nice %d for pid %d thread %d: %w", niceLevel, pid, tid, err)
			}
		}
		_, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioClassIdle<<ioprioClassShift)
		if e != 0 && e != syscall.ESRCH {
			return fmt.Errorf("limits: idle I/O class for pid %d thread %d: %w", pid, tid, e)
		}
	}
	return nil
}

// threadNice reads a thread's nice value from /proc (field 19 of stat).
func threadNice(pid, tid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, err
	}
	return statField(b, 19)
}

// statField returns field n (1-based, as in proc(5)) of a /proc stat line;
// the command name in parentheses may contain spaces.
func statField(b []byte, n int) (int, error) {
	v, err := statFields(b, n)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// statFields returns the fields ns of a /proc stat line, parsing it once.
func statFields(b []byte, ns ...int) ([]int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("malformed stat line")
	}
	f := strings.Fields(string(b[i+1:]))
	out := make([]int, len(ns))
	for k, n := range ns {
		if n < 3 {
			return nil, errors.New("malformed stat line")
		}
		if len(f) < n-2 {
			return nil, errors.New("short stat line")
		}
		v, err := strconv.Atoi(f[n-3])
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}
