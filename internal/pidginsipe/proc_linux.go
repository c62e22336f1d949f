//go:build linux

package pidginsipe

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal ends a helper process when the test that started it
// dies, so an interrupted run leaves no bus behind.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
