package loadgen

import (
	"math/bits"
	"sync/atomic"
)

// Tracker is the bookkeeping of one load run: for every send (by sequence
// number) which of its expected frames arrived. A send of user u from device
// s expects 2*D deliveries, "message" on each device of u's partner and
// "message_sent" on each device of u, plus one ack on device s. Every frame
// sets one bit of its send; a bit already set is a duplicate. All methods are
// safe for concurrent use.
type Tracker struct {
	devices int
	sender  []int32 // user of each send, -1 until sent
	device  []uint8 // sending device of each send
	got     []atomic.Uint64
	failed  []atomic.Bool // answered with an error frame

	duplicates atomic.Int64
	misrouted  atomic.Int64 // a frame on a socket it was not meant for
	unknown    atomic.Int64 // a frame for a send this run never made, or one that cannot be read
}

// MaxDevices is the most devices per user a Tracker supports: a send's
// 2*D+1 expected frames fit one 64-bit word.
const MaxDevices = 31

// NewTracker returns a Tracker for up to sends sends among users with
// devices devices each.
func NewTracker(sends, devices int) *Tracker {
	t := &Tracker{
		devices: devices,
		sender:  make([]int32, sends),
		device:  make([]uint8, sends),
		got:     make([]atomic.Uint64, sends),
		failed:  make([]atomic.Bool, sends),
	}
	for i := range t.sender {
		t.sender[i] = -1
	}
	return t
}

// Cap returns how many sends the tracker can hold.
func (t *Tracker) Cap() int { return len(t.sender) }

// Sent records that send seq was made by device dev of user. It must happen
// before the send is written to the socket.
func (t *Tracker) Sent(seq int, user, dev int) {
	t.device[seq] = uint8(dev)
	atomic.StoreInt32(&t.sender[seq], int32(user))
}

// Unsent takes back Sent for send seq, which the load generator dropped
// (its socket's queue full) or failed to write: the gateway never saw it,
// so none of its frames is missing; it is counted as client overflow or a
// send error instead.
func (t *Tracker) Unsent(seq int) {
	atomic.StoreInt32(&t.sender[seq], -1)
}

// Kind is the kind of a frame that answers a send.
type Kind int

// The frames a send produces.
const (
	Message     Kind = iota // on every device of the partner
	MessageSent             // on every device of the sender
	Ack                     // on the sending device
)

// Partner returns the user paired with u: u0<->u1, u2<->u3, ...
func Partner(u int) int { return u ^ 1 }

// Arrived records a frame of kind k for send seq on device dev of user. It
// reports whether it is the first such frame (false for a duplicate, a
// misrouted or an unknown frame), so the caller records its latency once.
func (t *Tracker) Arrived(seq int, k Kind, user, dev int) bool {
	if seq < 0 || seq >= len(t.sender) {
		t.unknown.Add(1)
		return false
	}
	sender := int(atomic.LoadInt32(&t.sender[seq]))
	if sender < 0 {
		t.unknown.Add(1)
		return false
	}
	var slot int
	switch k {
	case Message:
		if user != Partner(sender) {
			t.misrouted.Add(1)
			return false
		}
		slot = dev
	case MessageSent:
		if user != sender {
			t.misrouted.Add(1)
			return false
		}
		slot = t.devices + dev
	case Ack:
		if user != sender || dev != int(t.device[seq]) {
			t.misrouted.Add(1)
			return false
		}
		slot = 2 * t.devices
	}
	bit := uint64(1) << slot
	if t.got[seq].Or(bit)&bit != 0 {
		t.duplicates.Add(1)
		return false
	}
	return true
}

// Unreadable records a frame that is not JSON, or a delivery or ack that
// does not say which send it answers: it counts as unknown.
func (t *Tracker) Unreadable() { t.unknown.Add(1) }

// Failed records that send seq was answered with an error frame: it is
// reported as an error, and its deliveries are not expected.
func (t *Tracker) Failed(seq int) {
	if seq >= 0 && seq < len(t.failed) {
		t.failed[seq].Store(true)
	}
}

// Tally is what a Tracker counted.
type Tally struct {
	Sends         int64 `json:"sends"`
	Deliveries    int64 `json:"deliveries"`
	Acks          int64 `json:"acks"`
	Missing       int64 `json:"missing"`      // deliveries of sends not answered with an error
	MissingAcks   int64 `json:"missing_acks"` // sends answered neither with an ack nor an error
	Duplicates    int64 `json:"duplicates"`
	Misrouted     int64 `json:"misrouted"`
	Unknown       int64 `json:"unknown"`        // frames for no send of this run, or unreadable
	ErrorAnswered int64 `json:"error_answered"` // sends answered with an error frame
}

// Tally counts the frames of every send made so far.
func (t *Tracker) Tally() Tally {
	out := Tally{
		Duplicates: t.duplicates.Load(),
		Misrouted:  t.misrouted.Load(),
		Unknown:    t.unknown.Load(),
	}
	deliveryMask := uint64(1)<<(2*t.devices) - 1
	ackBit := uint64(1) << (2 * t.devices)
	for i := range t.sender {
		if atomic.LoadInt32(&t.sender[i]) < 0 {
			continue
		}
		out.Sends++
		got := t.got[i].Load()
		n := int64(bits.OnesCount64(got & deliveryMask))
		out.Deliveries += n
		if got&ackBit != 0 {
			out.Acks++
		}
		if t.failed[i].Load() {
			out.ErrorAnswered++
			continue
		}
		out.Missing += int64(2*t.devices) - n
		if got&ackBit == 0 {
			out.MissingAcks++
		}
	}
	return out
}

// Complete reports whether every send so far has all its frames or an
// error answer.
func (t *Tracker) Complete() bool {
	full := uint64(1)<<(2*t.devices+1) - 1
	for i := range t.sender {
		if atomic.LoadInt32(&t.sender[i]) < 0 || t.failed[i].Load() {
			continue
		}
		if t.got[i].Load() != full {
			return false
		}
	}
	return true
}
