package stack

import "syscall"

// setParentDeathSignal kills the bridge when the process that started it
// dies, so an interrupted test or demo leaves nothing running.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
