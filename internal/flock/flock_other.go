//go:build !unix

package flock

import (
	"context"
	"errors"
)

// Lock is a held lock; on this system there are none.
type Lock struct{}

// Acquire fails: avfleet's stores need flock, found on Linux and other Unix systems.
func Acquire(context.Context, string, string) (*Lock, error) {
	return nil, errors.New("avfleet's data and state directories need flock: run it on Linux or another Unix")
}

// Release does nothing.
func (l *Lock) Release() {}
