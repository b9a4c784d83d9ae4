package scan

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avfleet/avfleet/internal/agent/limits"
	"github.com/avfleet/avfleet/internal/clamd/clamdtest"
)

// procCPU reads utime+stime of pid from /proc (10 ms ticks).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	u, _ := strconv.Atoi(f[14-3])
	s, _ := strconv.Atoi(f[15-3])
	return time.Duration(u+s) * 10 * time.Millisecond
}

// TestRealScanPacedWithoutCgroup: where no cgroup can be made, the limits
// group's Pacer holds a scan's clamd to limits.cpu_percent: clamd's CPU
// over the paced scan stays within 50% of one core plus the pacer's burst,
// where the same scan unpaced uses it at twice that rate or more.
func TestRealScanPacedWithoutCgroup(t *testing.T) {
	// No clean-file cache: the second scan costs clamd what the first did.
	r := clamdtest.StartReal(t, clamdtest.RealOptions{Conf: []string{"DisableCache yes"}})
	g, _, err := limits.New(limits.Config{Name: "pace-scan", CPUPercent: 50, Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Mode() != limits.ModeNice {
		t.Fatalf("mode %s, want the fallback", g.Mode())
	}
	if err := g.Add(r.PID); err != nil { // nice 10 for clamd, and counted
		t.Fatal(err)
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2<<20)
	for i := range 40 { // 80 MB of random bytes: about 1.5 s of clamd's CPU
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		write(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), buf)
	}

	scan := func(p Pacer) (cpu, wall time.Duration) {
		s := realScanner(t, r, Config{Workers: Concurrency(0, 50), Pacer: p})
		c0, t0 := procCPU(t, r.PID), time.Now()
		sum, err := s.Run(context.Background(), Options{Paths: []string{dir}})
		if err != nil || sum.Files != 40 {
			t.Fatalf("scan: %d files, %v", sum.Files, err)
		}
		return procCPU(t, r.PID) - c0, time.Since(t0)
	}
	cpu, wall := scan(nil)
	t.Logf("unpaced: clamd used %v of CPU in %v", cpu, wall.Round(time.Millisecond))
	if float64(cpu) < 0.9*float64(wall) {
		t.Logf("clamd ran at under 90%% of a core unpaced: the machine is busy; the paced bound below still holds")
	}
	unpaced := cpu
	cpu, wall = scan(g.Pacer())
	if cpu < unpaced/2 {
		t.Fatalf("the paced scan cost clamd %v, the unpaced one %v: not the same work", cpu, unpaced)
	}
	budget := wall/2 + 500*time.Millisecond // 50% of the wall time + one second's budget up front
	t.Logf("paced at 50%%: clamd used %v of CPU in %v (budget %v)", cpu, wall.Round(time.Millisecond), budget)
	// Slack: the files in flight, charged after they are handed over (4,
	// about 40 ms of clamd's CPU each), and the 10 ms accounting ticks.
	// Unpaced, the same scan would be about a second over.
	if cpu > budget+250*time.Millisecond {
		t.Errorf("paced scan: clamd used %v of CPU in %v, over the budget of %v", cpu, wall, budget)
	}
}
