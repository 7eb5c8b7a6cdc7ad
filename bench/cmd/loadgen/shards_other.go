//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing: only Linux has Pdeathsig. A shard still
// ends with this process, since it holds its sockets only until its
// stdin, a pipe from this process, closes.
func dieWithParent(*exec.Cmd) {}
