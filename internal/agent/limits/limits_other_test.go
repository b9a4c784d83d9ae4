//go:build !linux

package limits

import (
	"runtime"
	"strings"
	"testing"
)

func TestUnsupported(t *testing.T) {
	if _, _, err := New(Config{Name: "n", CPUPercent: 50}); err == nil || !strings.Contains(err.Error(), runtime.GOOS) {
		t.Fatalf("New with limits: %v, want a not-supported error naming %s", err, runtime.GOOS)
	}
	g, warn, err := New(Config{Name: "n"})
	if err != nil || warn != nil || g.Mode() != ModeNone {
		t.Fatalf("New without limits: %v %v", warn, err)
	}
}
