package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill a shard process when this one dies.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
