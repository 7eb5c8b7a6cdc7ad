package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/e2e/seqcheck"
	"github.com/switchboard/switchboard/proto"
)

// dialTimeout bounds one WebSocket handshake and the wait for its
// connected frame.
const dialTimeout = 10 * time.Second

// redialBackoff is the pause between two failed dials: a refused upgrade,
// a 1013 (recovery store unreadable), a worker that is restarting.
const redialBackoff = 50 * time.Millisecond

// Device is one device of a user, as a client app behaves: it keeps the
// last position it processed in each of its streams and, whenever its
// socket ends, connects again and resumes from them. Every frame it
// processes goes to the checker, in order.
type Device struct {
	Name string
	User string

	url    string
	token  string
	check  *seqcheck.Checker
	dialer *websocket.Dialer

	mu        sync.Mutex
	pos, bpos string          // the last positions processed; "" before any
	conn      *websocket.Conn // the current socket; nil between two
	worker    int             // the current socket's worker
	away      time.Time       // no reconnect before
	want      int             // the first socket must land on this worker; -1 any
	avoid     int             // a socket may not land on this worker; -1 none
	paused    chan struct{}   // non-nil: reading waits until it is closed
	connects  int             // connected frames
	last      proto.Connected // the last connected frame's args
	errs      int             // error frames
	closes    map[int]int     // how sockets ended, by close code (-1: no close frame)
	transient int             // events without a position

	wake chan struct{} // one token: away changed
	stop chan struct{}
	done chan struct{}
}

// DeviceOptions tune a Device.
type DeviceOptions struct {
	// Worker is where its first socket must land (-1: anywhere).
	Worker int
	// SmallBuffer gives its sockets a 4 KiB receive buffer, so that a
	// device that stops reading backs the gateway's queue up quickly.
	SmallBuffer bool
	// Resume and BResume are the positions its first socket asks to
	// resume from ("" for none), as a client that kept them would.
	Resume, BResume string
}

func newDevice(name, user, wsURL, token string, check *seqcheck.Checker, o DeviceOptions) *Device {
	d := &Device{Name: name, User: user, url: wsURL, token: token, check: check,
		dialer: &websocket.Dialer{HandshakeTimeout: dialTimeout},
		want:   o.Worker, avoid: -1, pos: o.Resume, bpos: o.BResume, closes: map[int]int{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if o.SmallBuffer {
		d.dialer.NetDialContext = smallBufferDial
	}
	check.AddDevice(name, user)
	return d
}

// smallBufferDial dials with a 4 KiB receive buffer.
func smallBufferDial(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return nd.DialContext(ctx, network, addr)
}

// start runs the device until close.
func (d *Device) start() { go d.run() }

// close stops the device and waits for it.
func (d *Device) close() {
	d.mu.Lock()
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	if d.conn != nil {
		_ = d.conn.Close()
	}
	d.mu.Unlock()
	<-d.done
}

func (d *Device) stopped() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}

func (d *Device) run() {
	defer close(d.done)
	for !d.stopped() {
		if !d.waitAway() {
			return
		}
		c := d.connect()
		if c == nil {
			return
		}
		d.read(c)
		d.check.Disconnected(d.Name)
		d.mu.Lock()
		d.conn = nil
		d.mu.Unlock()
	}
}

// waitAway waits until the device may connect again; false if stopped.
func (d *Device) waitAway() bool {
	for {
		d.mu.Lock()
		wait := time.Until(d.away)
		d.mu.Unlock()
		if wait <= 0 {
			return !d.stopped()
		}
		t := time.NewTimer(wait)
		select {
		case <-d.stop:
			t.Stop()
			return false
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// connect dials until a socket is connected on an acceptable worker and
// its connected frame processed; nil if the device was stopped.
func (d *Device) connect() *websocket.Conn {
	for !d.stopped() {
		d.mu.Lock()
		q := url.Values{}
		if d.pos != "" {
			q.Set("resume", d.pos)
		}
		if d.bpos != "" {
			q.Set("bresume", d.bpos)
		}
		resume, bresume := d.pos, d.bpos
		d.mu.Unlock()
		target := d.url
		if len(q) > 0 {
			target += "?" + q.Encode()
		}
		c, _, err := d.dialer.Dial(target, http.Header{"Authorization": {"Bearer " + d.token}})
		if err != nil {
			d.pause(redialBackoff)
			continue
		}
		args, ok := d.readConnected(c)
		if !ok {
			_ = c.Close()
			d.pause(redialBackoff)
			continue
		}
		d.check.Connected(d.Name, resume, bresume, args)
		d.mu.Lock()
		d.connects++
		d.last = args
		d.pos, d.bpos = args.Pos, args.BPos
		misplaced := (d.want >= 0 && args.Worker != d.want) || (d.avoid >= 0 && args.Worker == d.avoid)
		if !misplaced {
			d.want = -1
			d.conn, d.worker = c, args.Worker
		}
		d.mu.Unlock()
		if misplaced {
			_ = c.Close()
			d.check.Disconnected(d.Name)
			continue
		}
		return c
	}
	return nil
}

// readConnected reads the first frame, which must be connected; false for
// a socket that ended first (such as a 1013 close).
func (d *Device) readConnected(c *websocket.Conn) (proto.Connected, bool) {
	_ = c.SetReadDeadline(time.Now().Add(dialTimeout))
	defer c.SetReadDeadline(time.Time{})
	_, data, err := c.ReadMessage()
	if err != nil {
		d.closed(err)
		return proto.Connected{}, false
	}
	var f proto.Frame
	var args proto.Connected
	if json.Unmarshal(data, &f) != nil || f.Event != proto.EventConnected || json.Unmarshal(f.Args, &args) != nil {
		d.check.Invalid(d.Name, "first frame is not connected: "+string(data))
		return proto.Connected{}, false
	}
	return args, true
}

// pause waits for dur unless the device is stopped.
func (d *Device) pause(dur time.Duration) {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-d.stop:
	case <-t.C:
	}
}

// read processes frames until the socket ends.
func (d *Device) read(c *websocket.Conn) {
	for {
		d.mu.Lock()
		gate := d.paused
		d.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-d.stop:
				return
			}
		}
		_, data, err := c.ReadMessage()
		if err != nil {
			d.closed(err)
			return
		}
		d.process(data)
	}
}

// closed records how a socket ended.
func (d *Device) closed(err error) {
	code := -1
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		code = ce.Code
	}
	d.mu.Lock()
	d.closes[code]++
	d.mu.Unlock()
}

// eventID is where the driver puts an event's identity: a post's id, a
// broadcast's, or the first word of a message's text.
type eventID struct {
	Post string `json:"post"`
	ID   string `json:"id"`
	Text string `json:"text"`
}

func (e eventID) key() string {
	if e.Post != "" {
		return e.Post
	}
	if e.ID != "" {
		return e.ID
	}
	first, _, _ := strings.Cut(e.Text, " ")
	return first
}

func (d *Device) process(data []byte) {
	var f proto.Frame
	if err := json.Unmarshal(data, &f); err != nil {
		d.check.Invalid(d.Name, "invalid frame: "+string(data))
		return
	}
	switch f.Event {
	case proto.EventConnected:
		d.check.Invalid(d.Name, "a second connected frame: "+string(data))
	case proto.EventResync:
		var r proto.Resync
		_ = json.Unmarshal(f.Args, &r)
		d.check.Resync(d.Name, r)
		d.mu.Lock()
		if r.Pos != "" {
			d.pos = r.Pos
		}
		if r.BPos != "" {
			d.bpos = r.BPos
		}
		d.mu.Unlock()
	case proto.EventError:
		d.mu.Lock()
		d.errs++
		d.mu.Unlock()
	case proto.EventAck:
	default:
		var id eventID
		_ = json.Unmarshal(f.Args, &id)
		key := id.key()
		switch {
		case f.Pos != "":
			d.check.Event(d.Name, false, f.Pos, key)
			d.mu.Lock()
			d.pos = later(d.pos, f.Pos)
			d.mu.Unlock()
		case f.BPos != "":
			d.check.Event(d.Name, true, f.BPos, key)
			d.mu.Lock()
			d.bpos = later(d.bpos, f.BPos)
			d.mu.Unlock()
		default:
			d.mu.Lock()
			d.transient++
			d.mu.Unlock()
		}
	}
}

// later returns the position a client keeps after processing next: next,
// unless it is one the client had already passed (a duplicate it drops).
func later(cur, next string) string {
	c, ok1 := proto.ParsePos(cur)
	n, ok2 := proto.ParsePos(next)
	if ok1 && ok2 && c.Epoch == n.Epoch && n.Off <= c.Off {
		return cur
	}
	return next
}

// Drop ends the device's socket abruptly, as a lost network does, and
// keeps it away for away before it connects again and resumes.
func (d *Device) Drop(away time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.away = time.Now().Add(away)
	if d.conn != nil {
		_ = d.conn.UnderlyingConn().Close()
	}
}

// Return ends a Drop's time away now: the device connects and resumes.
func (d *Device) Return() {
	d.mu.Lock()
	d.away = time.Time{}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Pause stops the device reading its socket, as a phone in a tunnel;
// Unpause lets it read again.
func (d *Device) Pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused == nil {
		d.paused = make(chan struct{})
	}
}

// Unpause lets a paused device read again.
func (d *Device) Unpause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused != nil {
		close(d.paused)
		d.paused = nil
	}
}

// Avoid makes the device's later sockets land anywhere but on worker (-1:
// anywhere).
func (d *Device) Avoid(worker int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.avoid = worker
}

// Connects returns how many connected frames the device has processed.
func (d *Device) Connects() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connects
}

// Online reports whether the device has a socket now.
func (d *Device) Online() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil
}

// Worker returns the worker of the device's current (or last) socket.
func (d *Device) Worker() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.worker
}

// LastConnected returns the args of the last connected frame.
func (d *Device) LastConnected() proto.Connected {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// Positions returns the last positions the device processed.
func (d *Device) Positions() (pos, bpos string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pos, d.bpos
}

// ErrorFrames returns how many error frames the device got.
func (d *Device) ErrorFrames() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.errs
}

// Closes returns how many sockets of the device ended with code (-1:
// without a close frame).
func (d *Device) Closes(code int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closes[code]
}

// Transients returns how many events without a position the device got.
func (d *Device) Transients() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.transient
}
