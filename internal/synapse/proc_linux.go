package synapse

import "syscall"

// setParentDeathSignal kills Synapse when the process that started it dies,
// so a crashed or killed test run does not leave homeservers behind.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
