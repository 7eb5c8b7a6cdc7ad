//go:build !linux

package testkit

import "syscall"

// dieWithTest returns attr: only Linux can have a server killed with the
// test binary (Pdeathsig), so elsewhere a test binary that dies without
// its cleanups leaves its servers running.
func dieWithTest(attr *syscall.SysProcAttr) *syscall.SysProcAttr { return attr }
