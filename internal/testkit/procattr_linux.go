package testkit

import "syscall"

// dieWithTest has the kernel kill a server started by a test when the test
// binary dies without running its cleanups (a panic, `go test -timeout`, a
// SIGKILL); without it the servers outlived such a run, holding their
// ports and files. Pdeathsig follows the thread that forked, and Go ends a
// thread only when a goroutine locked to it exits still locked, which
// nothing in the tests does.
func dieWithTest(attr *syscall.SysProcAttr) *syscall.SysProcAttr {
	attr.Pdeathsig = syscall.SIGKILL
	return attr
}
