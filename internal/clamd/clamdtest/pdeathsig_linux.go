package clamdtest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel kill clamd if the test binary dies first.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
