// Command scanlimit runs a command inside a cgroup made by the agent's own
// limits package (internal/agent/limits), with CPU limited to -cpu-percent of
// one core, after moving -pid (the benchmark's clamd) into it too. When the
// command ends it prints the CPU the group used while it ran, as a share of
// one core: for bench/scan.sh's limits.cpu_percent measurement.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/avfleet/avfleet/internal/agent/limits"
)

func main() {
	pct := flag.Int("cpu-percent", 25, "CPU limit, % of one core")
	pids := flag.String("pid", "", "comma-separated PIDs to move into the group first")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: scanlimit [-cpu-percent P] [-pid PID,...] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	g, warn, err := limits.New(limits.Config{Name: "bench-scan-" + strconv.Itoa(os.Getpid()), CPUPercent: *pct})
	if err != nil {
		fmt.Fprintln(os.Stderr, "scanlimit:", err)
		os.Exit(2)
	}
	defer g.Close()
	if warn != nil {
		fmt.Fprintln(os.Stderr, "scanlimit: NOT LIMITED:", warn)
		os.Exit(2)
	}
	add := []int{os.Getpid()} // the command inherits the group
	for s := range strings.SplitSeq(*pids, ",") {
		if s == "" {
			continue
		}
		p, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scanlimit: -pid:", err)
			os.Exit(2)
		}
		add = append(add, p)
	}
	for _, p := range add {
		if err := g.Add(p); err != nil {
			fmt.Fprintln(os.Stderr, "scanlimit:", err)
			os.Exit(2)
		}
	}
	before, err := g.Stats()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scanlimit:", err)
		os.Exit(2)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	runErr := cmd.Run()
	wall := time.Since(start)
	after, _ := g.Stats()
	cpu := after.CPU - before.CPU
	periods, throttled := throttling(g.Paths())
	fmt.Fprintf(os.Stderr, "scanlimit: mode=%s wall_seconds=%.2f cpu_seconds=%.2f cpu_percent_of_one_core=%.1f periods=%d throttled=%d\n",
		g.Mode(), wall.Seconds(), cpu.Seconds(), 100*cpu.Seconds()/wall.Seconds(), periods, throttled)
	if ee, ok := runErr.(*exec.ExitError); ok {
		os.Exit(ee.ExitCode())
	} else if runErr != nil {
		fmt.Fprintln(os.Stderr, "scanlimit:", runErr)
		os.Exit(2)
	}
}

// throttling reads the group's cpu.stat: how many 100 ms periods it had
// runnable work in, and in how many the quota stopped it.
func throttling(dirs []string) (periods, throttled int64) {
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cpu.stat"))
		if err != nil {
			continue
		}
		for l := range strings.SplitSeq(string(b), "\n") {
			k, v, _ := strings.Cut(l, " ")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "nr_periods":
				periods = n
			case "nr_throttled":
				throttled = n
			}
		}
		if periods > 0 {
			return periods, throttled
		}
	}
	return 0, 0
}
