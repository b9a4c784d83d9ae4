//go:build !linux

package limits

import (
	"fmt"
	"runtime"
)

// Group is a set of processes under one CPU and memory limit. Only Linux
// has the cgroups this needs.
type Group struct{}

var errUnsupported = fmt.Errorf("limits: CPU and memory limits are not supported on %s (cgroups are Linux only)", runtime.GOOS)

// New fails on this platform, unless nothing is to be limited.
func New(c Config) (g *Group, warning error, err error) {
	if err := c.check(); err != nil {
		return nil, nil, err
	}
	if c.limited() {
		return nil, nil, errUnsupported
	}
	return &Group{}, nil, nil
}

func (g *Group) Mode() Mode            { return ModeNone }
func (g *Group) Placement() string     { return "" }
func (g *Group) Paths() []string       { return nil }
func (g *Group) Add(pid int) error     { return nil }
func (g *Group) AddSelf() error        { return nil }
func (g *Group) Stats() (Stats, error) { return Stats{}, ErrNoCgroup }
func (g *Group) Close() error          { return nil }
func (g *Group) Pacer() *Pacer         { return nil }
