//go:build !linux

package mirror

import "context"

// watchName has no implementation here: the daemon polls.
func watchName(context.Context, string, string) <-chan struct{} { return nil }
