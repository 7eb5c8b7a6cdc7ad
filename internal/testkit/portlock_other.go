//go:build !linux

package testkit

import "io"

// reservePort reserves nothing: only Linux has the abstract Unix sockets
// that the reservation is made with, so elsewhere two test processes can
// draw the same port, as the bind check alone allows.
func reservePort(int) (io.Closer, bool) { return noReservation{}, true }

type noReservation struct{}

func (noReservation) Close() error { return nil }
