package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// onSIGHUP calls reload for every SIGHUP until ctx ends or the returned
// stop is called (the daemons' "re-read without restarting").
func onSIGHUP(ctx context.Context, reload func()) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload()
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
