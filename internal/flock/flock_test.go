package flock

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAcquireExcludesAndReleases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := Acquire(context.Background(), path, "held by test")
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second Acquire in
	// the same process conflicts just as another process would.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = Acquire(ctx, path, "held by test")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for lock "+path+" (held by test)") {
		t.Fatalf("second Acquire while held: %v", err)
	}
	l.Release()
	l2, err := Acquire(context.Background(), path, "held by test")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

func TestAcquireBadPath(t *testing.T) {
	_, err := Acquire(context.Background(), filepath.Join(t.TempDir(), "no", "such", "lock"), "x")
	if err == nil || !strings.Contains(err.Error(), "open lock file") {
		t.Fatalf("got %v", err)
	}
}
