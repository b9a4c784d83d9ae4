package limits

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The limited group inside a delegated cgroup. cgroup v2's "no internal
// processes" rule: once own enables controllers for its children it may
// hold no process itself, so the agent moves into the group's leaf, where
// its own scanning work (walking, opening files) is limited with clamd.
const delegGroupLeaf = "clamd"

// delegation is what New did inside the cgroup the agent was started in,
// for Close (and a failed New) to undo.
type delegation struct {
	own     string   // the cgroup the agent was started in
	leaf    string   // own/clamd, the limited group
	made    bool     // New created leaf (or found it left by an earlier run)
	moved   bool     // New moved the agent into leaf
	enabled []string // controllers New enabled in own/cgroup.subtree_control
}

// parseSelfCgroup returns the cgroup v2 path in the content of
// /proc/PID/cgroup (the "0::/path" line), "" when there is none or it is
// not a plain absolute path (a process outside its cgroup namespace's root
// sees "/../..").
func parseSelfCgroup(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<10)
	for sc.Scan() {
		p, ok := strings.CutPrefix(sc.Text(), "0::")
		if !ok {
			continue
		}
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
			return ""
		}
		return p
	}
	return ""
}

// delegated returns the cgroup the agent runs in when it may build a
// subtree there: below the root, cpu and memory available to it,
// cgroup.subtree_control writable, and no other process in it (systemd's
// Delegate= gives a service exactly that; a login shell's scope, shared
// with the shell, does not qualify). why says what was missing, for the
// record.
func (g *Group) delegated() (own, why string) {
	b, err := os.ReadFile(g.cfg.selfCgroup)
	if err != nil {
		return "", err.Error()
	}
	p := parseSelfCgroup(b)
	switch p {
	case "":
		return "", "no cgroup v2 path in " + g.cfg.selfCgroup
	case "/":
		return "", "the agent runs in the root cgroup"
	}
	own = filepath.Join(g.cfg.Root, p)
	ctrl, err := os.ReadFile(filepath.Join(own, "cgroup.controllers"))
	if err != nil {
		return "", err.Error()
	}
	have := strings.Fields(string(ctrl))
	if !slices.Contains(have, "cpu") || !slices.Contains(have, "memory") {
		return "", fmt.Sprintf("%s does not have the cpu and memory controllers (Delegate=cpu memory)", own)
	}
	f, err := os.OpenFile(filepath.Join(own, "cgroup.subtree_control"), os.O_WRONLY, 0)
	if err != nil {
		return "", err.Error()
	}
	f.Close()
	procs, err := os.ReadFile(filepath.Join(own, "cgroup.procs"))
	if err != nil {
		return "", err.Error()
	}
	for _, s := range strings.Fields(string(procs)) {
		if s != strconv.Itoa(g.cfg.pid) {
			return "", fmt.Sprintf("%s holds other processes (pid %s): it is not delegated to the agent alone", own, s)
		}
	}
	return own, ""
}

// setupV2Delegated builds own/clamd, the limited group, in the agent's own
// cgroup and moves the agent into it: own then holds no process and may
// enable cpu and memory for its children.
func (g *Group) setupV2Delegated(own string) error {
	group := filepath.Join(own, delegGroupLeaf)
	d := &delegation{own: own, leaf: group}
	g.deleg = d
	if err := os.Mkdir(group, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", group, err)
	}
	d.made = true // ours by name, inside our own cgroup, even when left by a crash
	if err := writeFile(filepath.Join(group, "cgroup.procs"), strconv.Itoa(g.cfg.pid)); err != nil {
		return fmt.Errorf("move the agent into %s: %w", group, err)
	}
	d.moved = true
	var err error
	if d.enabled, err = enableControllers(own); err != nil {
		return err
	}
	if err := g.writeLimits(group); err != nil {
		return err
	}
	g.procs = []procDir{{dir: group, root: g.cfg.Root}}
	g.cpuDir, g.memDir = group, group
	return nil
}

// undoDelegation puts the agent's cgroup back as New found it: controllers
// off again (own may hold processes only then), the agent and anything
// still in the group back in own, own/clamd removed.
func (g *Group) undoDelegation() error {
	d := g.deleg
	if d == nil {
		return nil
	}
	g.deleg = nil
	if len(d.enabled) > 0 {
		off := make([]string, len(d.enabled))
		for i, c := range d.enabled {
			off[i] = "-" + c
		}
		if err := writeFile(filepath.Join(d.own, "cgroup.subtree_control"), strings.Join(off, " ")); err != nil {
			return fmt.Errorf("limits: %w", err)
		}
	}
	if d.moved {
		self := strconv.Itoa(g.cfg.pid)
		var pids []string
		if b, err := os.ReadFile(filepath.Join(d.leaf, "cgroup.procs")); err == nil {
			for _, p := range strings.Fields(string(b)) {
				if p != self && !slices.Contains(pids, p) {
					pids = append(pids, p)
				}
			}
		}
		pids = append(pids, self)
		for _, p := range pids {
			if err := writeFile(filepath.Join(d.own, "cgroup.procs"), p); err != nil && !errors.Is(err, errNoProcess) {
				return fmt.Errorf("limits: move pid %s back to %s: %w", p, d.own, err)
			}
		}
	}
	if d.made {
		return g.rmdirRetry(d.leaf)
	}
	return nil
}
