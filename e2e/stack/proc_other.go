//go:build !linux

package stack

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
