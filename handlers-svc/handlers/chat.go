package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/limit"
	"github.com/switchboard/switchboard/proto"
)

// Events of the chat family: the request a client sends, and what it
// dispatches.
const (
	EventSendMessage = "sendMessage"  // client -> handler
	EventMessage     = "message"      // to every device of the recipient
	EventMessageSent = "message_sent" // to every device of the sender
)

// MaxTextLen is the most characters (Unicode code points) a message text may
// have.
const MaxTextLen = 4000

// MaxUserLen is the most bytes of a user id named in args ("to", a
// mention): the gateway accepts no longer one in a token, so a longer one
// names nobody, and only makes the dispatch and its stream keys bigger.
// Such an id is also printable UTF-8 (dispatch.ValidUser), as in a token.
const MaxUserLen = dispatch.MaxUserLen

// Message is the args of both the message and the message_sent events.
type Message struct {
	From  string `json:"from"`
	To    string `json:"to,omitempty"` // absent for a message to no one
	Text  string `json:"text"`
	TS    int64  `json:"ts"` // Unix epoch milliseconds
	MsgID string `json:"msg_id"`
}

// Sent is the result of sendMessage (and of sendToRoom): the id and time
// of the message, as its events carry them, so the sender can match them.
type Sent struct {
	MsgID string `json:"msg_id"`
	TS    int64  `json:"ts"` // Unix epoch milliseconds
}

// Chat serves the chat events.
type Chat struct {
	d   event.Dispatcher
	lim *limit.Sender // nil: no limit
}

// NewChat returns a Chat that dispatches through d.
func NewChat(d event.Dispatcher) *Chat { return &Chat{d: d} }

// Limit bounds what one sender pushes to one recipient with lim (nil: no
// bound) and returns c.
func (c *Chat) Limit(lim *limit.Sender) *Chat {
	c.lim = lim
	return c
}

// SendMessage serves sendMessage: {"to":"<user id>","text":"..."}, with "to"
// optional. It dispatches a Message as "message" to every device of the
// recipient, then as "message_sent" to every device of the sender, so the
// sender's other devices show it too, and answers with Sent. Without "to" only message_sent is
// dispatched. A user who writes to themself gets both events, as any other
// recipient and sender would; clients tell them apart by event name and may
// merge them by msg_id.
func (c *Chat) SendMessage(ctx context.Context, r *event.Request) error {
	var in struct {
		To   *string `json:"to"`
		Text *string `json:"text"`
	}
	if err := r.Decode(&in); err != nil {
		return err // already a bad_request naming the field
	}
	if in.To != nil && !dispatch.ValidUser(*in.To) {
		return event.BadRequest("args.to must be a user id of 1 to %d bytes of printable UTF-8", MaxUserLen)
	}
	if in.Text == nil {
		return event.BadRequest("args.text is required")
	}
	if n := utf8.RuneCountInString(*in.Text); n < 1 || n > MaxTextLen {
		return event.BadRequest("args.text must be 1 to %d characters", MaxTextLen)
	}

	// What the recipient's devices receive, escaped as it is on the wire:
	// 4,000 "<" are 24,000 bytes. The sender is a recipient too, of
	// message_sent, recorded in its own stream: unbounded, one user's own
	// messages could fill Redis for the recovery window.
	n := len(proto.AppendString(nil, *in.Text))
	if in.To != nil && *in.To != r.User {
		if err := c.lim.ToUser(ctx, r.User, *in.To, n); err != nil {
			return err
		}
	} else if in.To != nil {
		n *= 2 // message and message_sent, both to the sender
	}
	if err := c.lim.ToUser(ctx, r.User, r.User, n); err != nil {
		return err
	}
	msg := Message{
		From:  r.User,
		Text:  *in.Text,
		TS:    time.Now().UnixMilli(),
		MsgID: newMsgID(),
	}
	// Both events in one step: an outage delivers neither (unavailable,
	// safe to send again). Redis failing one of them while it runs the
	// other (or, on a cluster, one partition's master failing) is
	// answered handler_error or timeout, never unavailable, so the sender
	// is not told that nothing was sent.
	err := event.Atomically(ctx, c.d, func(d event.Dispatcher) error {
		if in.To != nil {
			msg.To = *in.To
			if err := d.ToUsers(ctx, []string{msg.To}, EventMessage, msg); err != nil {
				return err
			}
		}
		return d.ToUsers(ctx, []string{r.User}, EventMessageSent, msg)
	})
	if err != nil {
		return err // its code (event.WireError) says whether it may have been delivered
	}
	return r.Respond(Sent{MsgID: msg.MsgID, TS: msg.TS})
}

// newMsgID returns a unique message id: 128 random bits in hex.
func newMsgID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails, per crypto/rand
	return hex.EncodeToString(b[:])
}
