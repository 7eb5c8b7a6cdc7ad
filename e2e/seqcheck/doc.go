// Package seqcheck checks zero-gap delivery (docs/protocol.md section 6):
// what every device of every user received, against what was dispatched to
// that user.
//
// The truth is the dispatching side's: a driver tells the Checker each event
// it dispatches (Dispatching, before the request leaves) and whether
// handlers-svc confirmed it (Acked) or the answer was lost (Failed: the
// event may or may not have been dispatched). Devices tell it every frame
// they process, in the order they process them: "connected" (with the
// positions they asked to resume from), events with their positions, and
// "resync".
//
// A device's place in each of its streams (its user's and the broadcast
// stream) is a chain: it starts at a base (a connect that did not recover,
// or a resync), and a resume with recovered:true continues it, on whichever
// socket and worker. Along a chain the Checker holds, and records a
// violation for each breach:
//
//   - offsets go up by exactly one within an epoch: a skipped offset is a
//     gap, an offset not above the last one a duplicate, and another epoch
//     without a resync a gap too;
//   - an event reaches a device at most once, and only devices of users it
//     was dispatched to;
//   - one position holds one event, whichever device saw it;
//   - a recovered resume starts where the device asked, at the position it
//     last processed.
//
// At the end, Pending lists every confirmed event dispatched after the base
// of a device's current chain that the device has not had, and Behind every
// device not at its streams' tops: together they make a lost tail visible,
// so that a recovered:true after which an event never came fails.
// recovered:false and resync frames are allowed and counted: they start a
// new chain, and tests assert on their counts where the contract forbids
// them.
//
// # Concurrency
//
// A Checker is safe for concurrent use; each device's frames must be
// reported in the order the device processed them (one goroutine per
// device does so naturally).
package seqcheck
