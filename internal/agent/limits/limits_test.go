package limits

import "testing"

func TestCPUQuota(t *testing.T) {
	for pct, want := range map[int]int64{0: -1, 1: 1000, 20: 20000, 100: 100000, 250: 250000} {
		c := Config{Name: "n", CPUPercent: pct}
		if got := c.cpuQuota(); got != want {
			t.Errorf("cpu_percent %d: quota %d µs per %v, want %d", pct, got, Period, want)
		}
	}
}
