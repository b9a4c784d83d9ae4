//go:build !linux

package scan

import (
	"context"
	"errors"
	"time"

	"github.com/avfleet/avfleet/internal/agent/quarantine"
	"github.com/avfleet/avfleet/internal/report"
)

var errLinuxOnly = errors.New("scanning is supported on Linux only (it needs openat, /proc and descriptor passing)")

// Container is one distinct root filesystem among the host's processes.
type Container struct {
	ID     string
	PID    int
	Root   quarantine.Root
	Path   string
	Layers []string
}

// Close releases the open root.
func (c *Container) Close() error { return nil }

// DiscoverContainers needs Linux.
func DiscoverContainers(proc string) ([]*Container, error) { return nil, errLinuxOnly }

func (s *Scanner) run(ctx context.Context, opts Options) (report.ScanSummary, error) {
	now := time.Now()
	return report.ScanSummary{ScanID: opts.ScanID, Node: s.cfg.Node, Trigger: opts.Trigger, Start: now, End: now,
		Paths: opts.Paths, Result: report.ResultError, Error: errLinuxOnly.Error()}, errLinuxOnly
}
