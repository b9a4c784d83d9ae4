package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/agent/limits"
	"github.com/avfleet/avfleet/internal/clamd"
	"github.com/avfleet/avfleet/internal/testutil"
)

// cpuWindow is how long clamd's CPU use is measured under load. The CFS
// quota is enforced per 100 ms period, so 10 s is 100 periods: the same
// check as over the 20 s (an average over many periods, against a
// bound 25% that leaves room for measurement granularity), in half the time.
const cpuWindow = 10 * time.Second

// TestAgentLimits: limits.cpu_percent 20 and memory_bytes put the managed
// clamd and the agent itself into a cgroup with that CPU quota and memory limit, and while clamd
// is kept busy scanning, its CPU use stays at about a fifth of one core.
func TestAgentLimits(t *testing.T) {
	testutil.NeedRoot(t)
	certs := pki(t, "node1")
	m := startMirror(t, certs, t.TempDir(), "127.0.0.1:0")
	m.importFiles("test-3.cvd")
	cfg := agentConfig(t, certs, "node1", m.addr)
	cfg.Limits.CPUPercent = 20
	cfg.Limits.MemoryBytes = 512 << 20
	a := startAgent(t, cfg, nil)
	a.waitReady(t, 30*time.Second)

	a.mu.Lock()
	g := a.limits
	a.mu.Unlock()
	if g == nil || (g.Mode() != limits.ModeCgroup1 && g.Mode() != limits.ModeCgroup2) {
		testutil.Skip(t, "no writable cgroup hierarchy here: limits run in nice mode")
	}
	pid := a.Clamd().Status().PID
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), cgroupName("node1")) {
		t.Fatalf("clamd (pid %d) is not in the agent's cgroup:\n%s", pid, cg)
	}
	// The agent's own scanning is limited too: the agent (this test
	// process) joined the group.
	if self, err := os.ReadFile("/proc/self/cgroup"); err != nil || !strings.Contains(string(self), cgroupName("node1")) {
		t.Errorf("the agent itself is not in its limits' cgroup (%v):\n%s", err, self)
	}
	quota, memLimit := false, false
	for _, dir := range g.Paths() {
		if b, err := os.ReadFile(filepath.Join(dir, "cpu.max")); err == nil { // v2
			quota = quota || strings.TrimSpace(string(b)) == "20000 100000"
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us")); err == nil { // v1
			p, _ := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
			quota = quota || strings.TrimSpace(string(b)) == "20000" && strings.TrimSpace(string(p)) == "100000"
		}
		for _, f := range []string{"memory.max", "memory.limit_in_bytes"} {
			if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
				memLimit = memLimit || strings.TrimSpace(string(b)) == strconv.Itoa(512<<20)
			}
		}
	}
	if !quota {
		t.Errorf("no cgroup of %v has the 20%% CPU quota", g.Paths())
	}
	if !memLimit {
		t.Errorf("no cgroup of %v has the 512 MiB memory limit", g.Paths())
	}

	// Keep clamd busy: four streams of random data, over and over.
	blob := make([]byte, 8<<20)
	rand.Read(blob)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := clamd.NewClient(a.ClamdAddr())
			for ctx.Err() == nil {
				_, _ = c.ScanStream(ctx, bytes.NewReader(blob))
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second) // let the load build up
	s0, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	p0, t0 := procCPU(t, pid), time.Now()
	time.Sleep(cpuWindow)
	s1, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	p1, el := procCPU(t, pid), time.Since(t0)
	cgPct := 100 * (s1.CPU - s0.CPU).Seconds() / el.Seconds()
	procPct := 100 * (p1 - p0).Seconds() / el.Seconds()
	t.Logf("clamd CPU over %s under load: %.1f%% of one core (cgroup accounting), %.1f%% (/proc/%d/stat)", el.Round(time.Millisecond), cgPct, procPct, pid)
	if cgPct > 25 || procPct > 25 {
		t.Errorf("clamd used %.1f%% / %.1f%% of one core with cpu_percent 20", cgPct, procPct)
	}
	if cgPct < 10 {
		t.Errorf("clamd used only %.1f%%: the load did not keep it busy, the check proves nothing", cgPct)
	}
}

// procCPU is the user+system CPU time of pid (all its threads).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}
