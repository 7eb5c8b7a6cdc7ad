package testkit

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/proto"
)

// Client is a test WebSocket client that records every frame it receives.
type Client struct {
	t      testing.TB
	ws     *websocket.Conn
	User   string
	Conn   string // connection id from the connected frame
	Worker int    // worker index from the connected frame

	mu      sync.Mutex
	frames  []proto.Frame
	at      []time.Time   // when each of frames arrived
	arrived chan struct{} // signalled on every frame and on close
	closed  bool
	closeEr error
}

// Dial connects with token, fails the test unless the upgrade succeeds, and
// waits for the connected frame.
func Dial(t testing.TB, url, token string) *Client {
	t.Helper()
	c, resp, err := TryDial(t, url, token)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	return c
}

// TryDial is Dial that returns a refused upgrade's response and error
// instead of failing the test; once the upgrade succeeds, it waits for the
// connected frame like Dial.
func TryDial(t testing.TB, url, token string) (*Client, *http.Response, error) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + token}}
	wsc, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		return nil, resp, err
	}
	c := &Client{t: t, ws: wsc, arrived: make(chan struct{}, 1)}
	go c.read()
	t.Cleanup(c.Close)
	f := c.Expect(5*time.Second, "connected frame", func(f proto.Frame) bool { return f.Event == proto.EventConnected })
	var args proto.Connected
	if err := json.Unmarshal(f.Args, &args); err != nil {
		t.Fatalf("connected args %s: %v", f.Args, err)
	}
	c.User, c.Conn, c.Worker = f.ID, args.Conn, args.Worker
	return c, resp, nil
}

func (c *Client) read() {
	for {
		mt, data, err := c.ws.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.closed, c.closeEr = true, err
			c.mu.Unlock()
			c.signal()
			return
		}
		var f proto.Frame
		if mt != websocket.TextMessage || json.Unmarshal(data, &f) != nil {
			f = proto.Frame{Event: "!invalid", Args: data}
		}
		c.frames = append(c.frames, f)
		c.at = append(c.at, time.Now())
		c.mu.Unlock()
		c.signal()
	}
}

// Arrival is a frame and when the client read it.
type Arrival struct {
	Frame proto.Frame
	At    time.Time
}

// Arrivals returns every frame received so far with when it arrived.
func (c *Client) Arrivals() []Arrival {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Arrival, len(c.frames))
	for i, f := range c.frames {
		out[i] = Arrival{Frame: f, At: c.at[i]}
	}
	return out
}

func (c *Client) signal() {
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// Send writes an envelope; ref "" sends none.
func (c *Client) Send(event string, args any, ref string) {
	c.t.Helper()
	env := map[string]any{"event": event}
	if args != nil {
		env["args"] = args
	}
	if ref != "" {
		env["ref"] = ref
	}
	data, err := json.Marshal(env)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(websocket.TextMessage, data)
}

// TrySend writes an envelope like Send and returns the write error instead
// of failing the test, for sends that may race the server closing.
func (c *Client) TrySend(event string, args any, ref string) error {
	data, err := json.Marshal(map[string]any{"event": event, "args": args, "ref": ref})
	if err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

// TrySendRaw writes one frame of type mt as is and returns the write's
// error, for a sender that expects the socket to be closed under it.
func (c *Client) TrySendRaw(mt int, data []byte) error {
	return c.ws.WriteMessage(mt, data)
}

// SendRaw writes one frame of type mt as is.
func (c *Client) SendRaw(mt int, data []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(mt, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Expect returns, and removes, the first received frame that match accepts,
// waiting up to timeout for it.
func (c *Client) Expect(timeout time.Duration, what string, match func(proto.Frame) bool) proto.Frame {
	c.t.Helper()
	f, ok := c.TryExpect(timeout, match)
	if ok {
		return f
	}
	if closed, err := c.Closed(); closed {
		c.t.Fatalf("%s (conn %s, worker %d): socket closed before %s arrived: %v", c.User, c.Conn, c.Worker, what, err)
	}
	c.t.Fatalf("%s (conn %s, worker %d): no %s within %s; got %v", c.User, c.Conn, c.Worker, what, timeout, c.Frames())
	return proto.Frame{}
}

// TryExpect is Expect that reports false instead of failing the test when
// no frame matches within timeout or the socket closes first.
func (c *Client) TryExpect(timeout time.Duration, match func(proto.Frame) bool) (proto.Frame, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i, f := range c.frames {
			if match(f) {
				c.frames = append(c.frames[:i:i], c.frames[i+1:]...)
				c.at = append(c.at[:i:i], c.at[i+1:]...)
				c.mu.Unlock()
				return f, true
			}
		}
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return proto.Frame{}, false
		}
		select {
		case <-c.arrived:
		case <-deadline.C:
			return proto.Frame{}, false
		}
	}
}

// Closed reports whether the socket has ended, and how.
func (c *Client) Closed() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.closeEr
}

// ExpectEvent waits for a frame of event.
func (c *Client) ExpectEvent(timeout time.Duration, event string) proto.Frame {
	c.t.Helper()
	return c.Expect(timeout, event+" frame", func(f proto.Frame) bool { return f.Event == event })
}

// ExpectRef waits for the ack or error frame of ref.
func (c *Client) ExpectRef(timeout time.Duration, ref string) proto.Frame {
	c.t.Helper()
	return c.Expect(timeout, "reply to "+ref, func(f proto.Frame) bool {
		return (f.Event == proto.EventAck || f.Event == proto.EventError) && f.Ref == ref
	})
}

// Frames returns the frames received and not yet taken by Expect.
func (c *Client) Frames() []proto.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]proto.Frame(nil), c.frames...)
}

// WaitClosed waits until the server closes the socket and returns the close
// error (a *websocket.CloseError when a close frame arrived).
func (c *Client) WaitClosed(timeout time.Duration) error {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		closed, err := c.closed, c.closeEr
		c.mu.Unlock()
		if closed {
			return err
		}
		select {
		case <-c.arrived:
		case <-deadline.C:
			c.t.Fatalf("%s: socket still open after %s", c.User, timeout)
		}
	}
}

// CloseCode returns the close code of a close error, or -1.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// Close closes the socket.
func (c *Client) Close() { _ = c.ws.Close() }

// CloseNormally sends a close frame with 1000 and waits until the server
// has answered it, the way a browser closes a socket.
func (c *Client) CloseNormally() {
	c.t.Helper()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		c.t.Fatalf("%s: send close: %v", c.User, err)
	}
	_ = c.WaitClosed(5 * time.Second)
	c.Close()
}
