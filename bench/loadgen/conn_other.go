//go:build !linux

package loadgen

import "syscall"

// bindNoPort does nothing: IP_BIND_ADDRESS_NO_PORT is Linux's. Each bind
// then takes a source port of its own, so a run that reuses the ports of
// an earlier one still in TIME_WAIT may fail to bind some; fewer sockets
// than on Linux fit per source address.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }

// rawRecv and rawSend take the plain system calls: the scheduler-free
// ones of the Linux build are a Linux tuning.
func rawRecv(fd uintptr, p []byte) (int, error) { return plainRecv(fd, p) }

func rawSend(fd uintptr, p []byte) (int, error) { return plainSend(fd, p) }
