package proto

import (
	"strconv"
	"time"
)

// DeadlineHeader is the NATS header of every request the gateway sends
// (docs/protocol.md section 3): the Unix time in milliseconds after which
// the gateway no longer waits for the reply, having told the client
// timeout. handlers-svc does not start a request whose deadline has
// passed.
const DeadlineHeader = "Switchboard-Deadline"

// FormatDeadline returns t as the value of DeadlineHeader.
func FormatDeadline(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// ParseDeadline returns the time a DeadlineHeader value names; false when
// it is not a positive integer of Unix milliseconds.
func ParseDeadline(s string) (time.Time, bool) {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}
