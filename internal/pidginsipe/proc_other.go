//go:build !linux

package pidginsipe

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
