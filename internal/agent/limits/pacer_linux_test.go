package limits

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestPacerRealCPU: without a cgroup, a busy child process whose work is
// gated by the group's Pacer uses about limits.cpu_percent of one core, as
// measured by the kernel. The bound checked is a ceiling: a loaded machine
// gives the child less, never more.
func TestPacerRealCPU(t *testing.T) {
	root := t.TempDir() // no cgroup file system here: the fallback
	g, warn, err := New(Config{Name: "pace", CPUPercent: 20, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Mode() != ModeNice || g.Pacer() == nil {
		t.Fatalf("mode %s, pacer %v, warning %v: want ModeNice with a pacer", g.Mode(), g.Pacer(), warn)
	}
	for _, want := range []string{"kept by pacing", "memory_bytes is NOT enforced"} {
		if !strings.Contains(warn.Error(), want) {
			t.Errorf("warning %q lacks %q", warn, want)
		}
	}

	// The paced work is a child burning CPU in 5 ms slices, each one asked
	// for over a pipe and answered when done: the child stands for clamd,
	// which spends CPU on the files it is handed, two at most in flight.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AVFLEET_LIMITS_HELPER=burn")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// The first second spends the pacer's burst (one second's budget);
	// the next three are measured.
	var cpu0 time.Duration
	begin, start, measuring := time.Now(), time.Time{}, false
	inFlight, ack := 0, make([]byte, 1)
	for !measuring || time.Since(start) < 3*time.Second {
		if !measuring && time.Since(begin) > time.Second {
			if cpu0, _, err = readProcCPU(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			start, measuring = time.Now(), true
		}
		if inFlight == 2 {
			if _, err := out.Read(ack); err != nil {
				t.Fatal(err)
			}
			inFlight--
		}
		if err := g.Pacer().Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		inFlight++
	}
	wall := time.Since(start)
	cpu1, _, err := readProcCPU(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pct := float64(cpu1-cpu0) / float64(wall) * 100
	t.Logf("the paced child used %v of CPU in %v: %.1f%% of one core (limit 20%%)", cpu1-cpu0, wall.Round(time.Millisecond), pct)
	// Counted in 10 ms ticks, charged late by up to the slices in flight.
	if pct > 20*1.3 {
		t.Errorf("paced work used %.1f%% of one core, limit 20%%", pct)
	}
	if pct < 5 {
		t.Errorf("paced work used %.1f%% of one core: it barely ran", pct)
	}
}

// TestProcCPUMembers: an exited process leaves the sum without taking back
// what it used; an unknown pid is dropped.
func TestProcCPUMembers(t *testing.T) {
	var c procCPU
	c.add(os.Getpid())
	c.add(1 << 30) // no such pid
	c.read()
	deadline := time.Now().Add(2 * time.Second)
	for x := 0; time.Now().Before(deadline); x++ { // burn 200 ms or more
		if c.read() >= 200*time.Millisecond {
			break
		}
		runtime.Gosched()
	}
	got := c.read()
	if got < 200*time.Millisecond {
		t.Fatalf("this process burned 2 s of CPU, procCPU counted %v", got)
	}
	if len(c.members) != 1 {
		t.Errorf("members %v: the unknown pid should be gone", c.members)
	}
	sh := exec.Command("sh", "-c", "exit 0")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	c.add(sh.Process.Pid)
	sh.Wait()
	if after := c.read(); after < got {
		t.Errorf("sum went back from %v to %v when a member exited", got, after)
	}
	if _, ok := c.members[sh.Process.Pid]; ok {
		t.Error("an exited member stayed in the set")
	}
}
