//go:build !linux

package synapse

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
