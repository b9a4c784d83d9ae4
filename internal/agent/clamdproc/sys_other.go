//go:build !linux

package clamdproc

import (
	"os"
	"os/exec"
)

// startCmd starts clamd. Only Linux can tie clamd's life to the agent's
// (Pdeathsig) or start it inside a cgroup; elsewhere clamd may outlive an
// agent that is killed with SIGKILL, and OnStart runs after clamd started.
func startCmd(s startSpec) (*exec.Cmd, func(ok bool) error, error) {
	cmd := s.command(s.bin, s.args...)
	return cmd, nil, cmd.Start()
}

func terminate(p *os.Process) error {
	if err := p.Signal(os.Interrupt); err != nil {
		return p.Kill()
	}
	return nil
}

func cgroupOOMReader(int) func() (uint64, error) { return nil }
