//go:build !linux

package announced

// pipeBuf is the most bytes one write puts in a pipe atomically
// (PIPE_BUF): the least POSIX allows, elsewhere.
const pipeBuf = 512
