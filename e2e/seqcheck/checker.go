package seqcheck

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/proto"
)

// Stream names a recovery stream: a user's, or the broadcast stream.
type Stream string

// Broadcast is the broadcast stream.
const Broadcast Stream = "broadcast"

// UserStream returns the stream of user.
func UserStream(user string) Stream { return Stream("user:" + user) }

// maxMessages is how many violations are kept with their text; the rest
// are only counted.
const maxMessages = 50

// Checker checks devices' frames against the dispatches; see the package
// doc.
type Checker struct {
	mu      sync.Mutex
	tick    uint64 // orders dispatches against the bases of chains
	streams map[Stream]*truth
	ids     map[string]*dispatch
	devices map[string]*device
	stats   Stats
	msgs    []string
}

// Stats counts what a Checker saw.
type Stats struct {
	Dispatched int // events dispatched (Dispatching)
	Acked      int // of which confirmed
	Failed     int // of which unconfirmed: the answer was lost
	Events     int // events devices processed, each checked
	Connects   int // connected frames
	Resumes    int // connected frames answering a resume
	Recovered  int // of which recovered:true
	Replayed   int // the missed events those announced
	// NotRecovered counts resumes answered recovered:false.
	NotRecovered int
	Resyncs      map[string]int // resync frames by reason
	Gaps         int            // skipped offsets (or epochs without resync)
	Duplicates   int            // events a device had already
	Violations   int            // every breach, gaps and duplicates included
}

// Resynced returns the number of resync frames.
func (s Stats) Resynced() int {
	n := 0
	for _, v := range s.Resyncs {
		n += v
	}
	return n
}

// truth is one stream's dispatches, in the order they were dispatched, and
// the event each position held as devices saw it.
type truth struct {
	sent []*dispatch
	at   map[proto.Pos]string
}

// dispatch is one event dispatched to one or more streams.
type dispatch struct {
	id      string
	tick    uint64
	streams []Stream
	acked   bool
	failed  bool
}

// device is one client device: a user's, following its user's stream and
// the broadcast stream.
type device struct {
	name      string
	user      string
	tracks    map[Stream]*track
	seen      map[string]struct{}
	connected bool
}

// track is a device's chain in one stream.
type track struct {
	known bool
	pos   proto.Pos // the last position processed (or the base)
	base  uint64    // the tick at which the chain started
	next  int       // index in the stream's truth.sent before which nothing is pending
}

// New returns an empty Checker.
func New() *Checker {
	return &Checker{
		streams: map[Stream]*truth{},
		ids:     map[string]*dispatch{},
		devices: map[string]*device{},
		stats:   Stats{Resyncs: map[string]int{}},
	}
}

func (c *Checker) stream(st Stream) *truth {
	t := c.streams[st]
	if t == nil {
		t = &truth{at: map[proto.Pos]string{}}
		c.streams[st] = t
	}
	return t
}

// violate records a breach. c.mu is held.
func (c *Checker) violate(format string, args ...any) {
	c.stats.Violations++
	if len(c.msgs) < maxMessages {
		c.msgs = append(c.msgs, fmt.Sprintf(format, args...))
	}
}

// AddDevice declares device name of user; frames of an undeclared device
// are violations.
func (c *Checker) AddDevice(name, user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.devices[name]; ok {
		c.violate("device %s declared twice", name)
		return
	}
	c.devices[name] = &device{name: name, user: user, seen: map[string]struct{}{},
		tracks: map[Stream]*track{UserStream(user): {}, Broadcast: {}}}
}

// Dispatching declares event id, about to be dispatched to streams: call it
// before the request that dispatches it is sent.
func (c *Checker) Dispatching(id string, streams ...Stream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.ids[id]; ok {
		c.violate("event %s dispatched twice by the driver", id)
		return
	}
	c.tick++
	d := &dispatch{id: id, tick: c.tick, streams: streams}
	c.ids[id] = d
	for _, st := range streams {
		t := c.stream(st)
		t.sent = append(t.sent, d)
	}
	c.stats.Dispatched++
}

// Acked records that handlers-svc confirmed the dispatch of id: every
// device whose chain began before it was dispatched must get it.
func (c *Checker) Acked(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.ids[id]
	switch {
	case d == nil:
		c.violate("ack of %s, which was never dispatched", id)
	case !d.acked && !d.failed:
		d.acked = true
		c.stats.Acked++
	}
}

// Failed records that the answer for id was lost or was an error: it may
// or may not have been dispatched, so devices may get it (once) or not.
func (c *Checker) Failed(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.ids[id]
	switch {
	case d == nil:
		c.violate("failure of %s, which was never dispatched", id)
	case !d.acked && !d.failed:
		d.failed = true
		c.stats.Failed++
	}
}

// Connected records a device's connected frame; resume and bresume are the
// positions it asked to resume from ("" for none).
func (c *Checker) Connected(name, resume, bresume string, args proto.Connected) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.device(name)
	if d == nil {
		return
	}
	c.stats.Connects++
	d.connected = true
	c.tick++
	asked := map[Stream]string{UserStream(d.user): resume, Broadcast: bresume}
	given := map[Stream]string{UserStream(d.user): args.Pos, Broadcast: args.BPos}
	resumed := resume != "" || bresume != ""
	recovered := false
	switch {
	case resumed && args.Recovered == nil:
		c.violate("%s: connected without recovered after a resume from %q %q", name, resume, bresume)
	case resumed:
		c.stats.Resumes++
		recovered = *args.Recovered
		if recovered {
			c.stats.Recovered++
			if args.Missed != nil {
				c.stats.Replayed += *args.Missed
			}
		} else {
			c.stats.NotRecovered++
		}
	case args.Recovered != nil:
		c.violate("%s: connected says recovered=%v without a resume", name, *args.Recovered)
	}
	for _, st := range []Stream{UserStream(d.user), Broadcast} {
		tr := d.tracks[st]
		p, ok := proto.ParsePos(given[st])
		if !ok {
			c.violate("%s: connected has no valid position of %s: %q", name, st, given[st])
			continue
		}
		if !recovered || asked[st] == "" {
			c.rebase(st, tr, p)
			continue
		}
		// A recovered resume continues the chain from the asked position.
		if a, _ := proto.ParsePos(asked[st]); a != p {
			c.violate("%s: recovered resume of %s from %s starts at %s", name, st, asked[st], given[st])
		}
		if tr.known && tr.pos != p {
			c.violate("%s: resumed %s from %s but had processed up to %s", name, st, given[st], tr.pos)
		}
		if !tr.known {
			c.rebase(st, tr, p)
		}
		tr.pos = p
	}
}

// rebase starts a new chain of tr at p. c.mu is held and c.tick moved on.
func (c *Checker) rebase(st Stream, tr *track, p proto.Pos) {
	t := c.stream(st)
	*tr = track{known: true, pos: p, base: c.tick,
		next: sort.Search(len(t.sent), func(i int) bool { return t.sent[i].tick > c.tick })}
}

// Resync records a device's resync frame: the chains of the streams it
// names start again at its positions.
func (c *Checker) Resync(name string, r proto.Resync) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.device(name)
	if d == nil {
		return
	}
	c.tick++
	c.stats.Resyncs[r.Reason]++
	named := false
	for st, s := range map[Stream]string{UserStream(d.user): r.Pos, Broadcast: r.BPos} {
		if s == "" {
			continue
		}
		named = true
		p, ok := proto.ParsePos(s)
		if !ok {
			c.violate("%s: resync with an invalid position of %s: %q", name, st, s)
			continue
		}
		c.rebase(st, d.tracks[st], p)
	}
	if !named {
		c.violate("%s: resync without a position", name)
	}
}

// Event records that a device processed event id at position pos of its
// user's stream (broadcast false: the frame's "pos") or of the broadcast
// stream ("bpos").
func (c *Checker) Event(name string, broadcast bool, pos, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.device(name)
	if d == nil {
		return
	}
	st := UserStream(d.user)
	if broadcast {
		st = Broadcast
	}
	tr := d.tracks[st]
	p, ok := proto.ParsePos(pos)
	switch {
	case !ok:
		c.violate("%s: event %s with an invalid position %q", name, id, pos)
		return
	case !tr.known:
		c.violate("%s: event %s at %s before connected", name, id, pos)
		return
	case p.Epoch != tr.pos.Epoch:
		c.stats.Gaps++
		c.violate("%s: gap: event %s at %s, in another epoch than %s, without resync", name, id, pos, tr.pos)
	case p.Off <= tr.pos.Off:
		c.stats.Duplicates++
		c.violate("%s: duplicate or out of order: event %s at %s after %s", name, id, pos, tr.pos)
		return
	case p.Off != tr.pos.Off+1:
		c.stats.Gaps++
		c.violate("%s: gap: event %s at %s after %s: %d events skipped", name, id, pos, tr.pos, p.Off-tr.pos.Off-1)
	}
	tr.pos = p
	c.stats.Events++
	if _, dup := d.seen[id]; dup {
		c.stats.Duplicates++
		c.violate("%s: event %s again, now at %s", name, id, pos)
		return
	}
	d.seen[id] = struct{}{}
	disp := c.ids[id]
	if disp == nil || !slices.Contains(disp.streams, st) {
		c.violate("%s: event %s at %s was never dispatched to %s", name, id, pos, st)
		return
	}
	t := c.stream(st)
	if prev, ok := t.at[p]; ok && prev != id {
		c.violate("%s: %s holds event %s, another device had %s there", name, pos, id, prev)
		return
	}
	t.at[p] = id
}

// Invalid records a frame a device could not take as the contract has it
// (not JSON, a second connected, a connected without args).
func (c *Checker) Invalid(name, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violate("%s: %s", name, what)
}

// Disconnected records that a device's socket ended; its chains go on if
// it resumes with recovered:true.
func (c *Checker) Disconnected(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.device(name); d != nil {
		d.connected = false
	}
}

// device returns the device name, recording a violation if it was not
// declared. c.mu is held.
func (c *Checker) device(name string) *device {
	d := c.devices[name]
	if d == nil {
		c.violate("frame of undeclared device %s", name)
	}
	return d
}

// Missing is a confirmed event a device should have had and has not.
type Missing struct {
	Device string
	Stream Stream
	ID     string
}

func (m Missing) String() string { return m.Device + " lacks " + m.ID + " of " + string(m.Stream) }

// Pending returns how many confirmed events the devices lack, each
// dispatched after the base of the device's current chain in its stream,
// and up to max of them.
func (c *Checker) Pending(max int) (int, []Missing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	var out []Missing
	for _, name := range slices.Sorted(maps.Keys(c.devices)) {
		d := c.devices[name]
		for _, st := range slices.Sorted(maps.Keys(d.tracks)) {
			tr := d.tracks[st]
			if !tr.known {
				continue
			}
			sent := c.stream(st).sent
			// Nothing before next is pending: every event there was had,
			// or failed.
			for tr.next < len(sent) && (sent[tr.next].failed || d.has(sent[tr.next].id)) {
				tr.next++
			}
			for _, disp := range sent[tr.next:] {
				if disp.acked && !d.has(disp.id) {
					n++
					if len(out) < max {
						out = append(out, Missing{Device: name, Stream: st, ID: disp.id})
					}
				}
			}
		}
	}
	return n, out
}

func (d *device) has(id string) bool {
	_, ok := d.seen[id]
	return ok
}

// Behind returns the devices that are not connected, or not at the tops
// of their streams (tops maps streams to their top positions, as read from
// the store; a stream absent from it is not checked).
func (c *Checker) Behind(tops map[Stream]proto.Pos) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, name := range slices.Sorted(maps.Keys(c.devices)) {
		d := c.devices[name]
		if !d.connected {
			out = append(out, name+" is not connected")
			continue
		}
		for _, st := range slices.Sorted(maps.Keys(d.tracks)) {
			top, ok := tops[st]
			if tr := d.tracks[st]; ok && tr.pos != top {
				out = append(out, fmt.Sprintf("%s is at %s of %s, whose top is %s", name, tr.pos, st, top))
			}
		}
	}
	return out
}

// Lagging returns the devices that have not yet processed their streams
// up to tops (taken from the store a moment ago): not connected, in
// another epoch, or at an offset below the top. Unlike Behind it allows a
// device to be further on, as it is while events keep coming.
func (c *Checker) Lagging(tops map[Stream]proto.Pos) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, name := range slices.Sorted(maps.Keys(c.devices)) {
		d := c.devices[name]
		if !d.connected {
			out = append(out, name+" is not connected")
			continue
		}
		for _, st := range slices.Sorted(maps.Keys(d.tracks)) {
			top, ok := tops[st]
			if tr := d.tracks[st]; ok && (tr.pos.Epoch != top.Epoch || tr.pos.Off < top.Off) {
				out = append(out, fmt.Sprintf("%s is at %s of %s, short of %s", name, tr.pos, st, top))
			}
		}
	}
	return out
}

// Users returns the users of the declared devices, sorted.
func (c *Checker) Users() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := map[string]struct{}{}
	for _, d := range c.devices {
		set[d.user] = struct{}{}
	}
	return slices.Sorted(maps.Keys(set))
}

// Stats returns a copy of the counts so far.
func (c *Checker) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Resyncs = maps.Clone(c.stats.Resyncs)
	return s
}

// Err returns the violations recorded (the first maxMessages of them, and
// how many there were), or nil.
func (c *Checker) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats.Violations == 0 {
		return nil
	}
	return errors.New(fmt.Sprintf("%d violations of zero-gap delivery; the first %d:\n  ", c.stats.Violations, len(c.msgs)) +
		strings.Join(c.msgs, "\n  "))
}
