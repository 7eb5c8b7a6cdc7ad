package proto

import (
	"bytes"
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// Dispatch is a message handlers-svc publishes on Channel for every gateway
// worker (docs/protocol.md section 4): deliver Event with Args to every local socket
// of each of Users, to each of Conns, or to every local socket if Broadcast.
//
// SkipUsers, when a dispatch is published as several messages, lists the
// users the others reach: a socket named in Conns whose user is one of them
// gets the event through its user, with its position, not here too.
//
// A recoverable dispatch (docs/protocol.md section 6) also carries the position of
// its entry in each target user's stream (Pos, by user id) or in the
// broadcast stream (BPos). A dispatch without positions, as a v1 publisher
// writes, is delivered as transient.
type Dispatch struct {
	Event     string          `json:"event"`
	Args      json.RawMessage `json:"args"`
	Users     []string        `json:"users"`
	Conns     []string        `json:"conns"`
	SkipUsers []string        `json:"skip_users,omitempty"`
	Broadcast bool            `json:"broadcast"`
	// Transient marks a dispatch its publisher chose not to record
	// (docs/protocol.md section 4): a worker that recovers does not take
	// its missing positions for a publisher that records nothing.
	Transient bool `json:"transient,omitempty"`
	// Except names connections that get nothing of the dispatch, though
	// they are among its targets (docs/protocol.md section 4, an
	// extension): "everyone but the sender". A recorded dispatch keeps
	// the list in its stream entries (ExceptField), so that neither a
	// replay nor a gap filled sends it to them.
	Except []string `json:"except,omitempty"`
	// Pos holds the positions by user id. DecodeDispatchLazy leaves it
	// nil and keeps them by the index of their user instead (UserPos,
	// HasPos).
	Pos  map[string]string `json:"pos,omitempty"`
	BPos string            `json:"bpos,omitempty"`

	// userPos is what DecodeDispatchLazy read of "pos": userPos[i] is
	// the position of Users[i], "" for none; nil when the body has no
	// "pos", empty when it is {}.
	userPos []string
}

// String returns d's JSON body (AppendDispatch), so that a dispatch
// printed with %v, as a test failure does, shows its args as JSON rather
// than as bytes.
func (d Dispatch) String() string { return string(AppendDispatch(nil, &d)) }

// AppendDispatch appends the JSON body of d to dst. Nil lists are encoded as
// empty arrays (but SkipUsers and Except, omitted when empty) and absent (nil or
// zero-length) args as null; positions are written last, in the order of
// Users, as the publish script splices them: those of Pos, or when it is
// empty those DecodeDispatchLazy read.
func AppendDispatch(dst []byte, d *Dispatch) []byte {
	dst = AppendDispatchHead(dst, d)
	if len(d.Pos) == 0 && d.HasPos() {
		dst = appendUserPos(dst, d)
	} else if len(d.Pos) > 0 {
		dst = append(dst, `,"pos":{`...)
		n := 0
		pair := func(u, p string) {
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = AppendString(dst, u)
			dst = append(dst, ':')
			dst = AppendString(dst, p)
		}
		for _, u := range d.Users {
			if p, ok := d.Pos[u]; ok {
				pair(u, p)
			}
		}
		for u, p := range d.Pos { // positions of users not listed, if any
			if !slices.Contains(d.Users, u) {
				pair(u, p)
			}
		}
		dst = append(dst, '}')
	}
	if d.BPos != "" {
		dst = append(dst, `,"bpos":`...)
		dst = AppendString(dst, d.BPos)
	}
	return append(dst, '}')
}

// AppendDispatchHead appends the JSON body of d without its positions and
// without the closing brace: the form the publish script completes with
// the positions it assigns.
func AppendDispatchHead(dst []byte, d *Dispatch) []byte {
	dst = append(dst, `{"event":`...)
	dst = AppendString(dst, d.Event)
	dst = append(dst, `,"args":`...)
	if len(d.Args) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, d.Args...)
	}
	dst = append(dst, `,"users":`...)
	dst = appendStrings(dst, d.Users)
	dst = append(dst, `,"conns":`...)
	dst = appendStrings(dst, d.Conns)
	if len(d.SkipUsers) > 0 {
		dst = append(dst, `,"skip_users":`...)
		dst = appendStrings(dst, d.SkipUsers)
	}
	if d.Broadcast {
		dst = append(dst, `,"broadcast":true`...)
	} else {
		dst = append(dst, `,"broadcast":false`...)
	}
	if d.Transient {
		dst = append(dst, TransientField...)
	}
	if len(d.Except) > 0 {
		dst = append(dst, ExceptField...)
		dst = appendStrings(dst, d.Except)
	}
	return dst
}

// ExceptField follows "broadcast" (and "transient") in the body of a
// dispatch that leaves connections out (Dispatch.Except), before the list.
const ExceptField = `,"except":`

// TransientField follows "broadcast" in the body of a transient dispatch.
const TransientField = `,"transient":true`

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, s)
	}
	return append(dst, ']')
}

// DecodeDispatch parses a dispatch message and checks it: the event must match
// EventPattern, args, when present, be valid JSON, and every position a
// position; args of null are returned as nil. The positions are returned in
// Pos. A gateway worker, which needs only those of the users it holds,
// reads with DecodeDispatchLazy instead.
//
// Every gateway worker decodes every dispatch, so the exact form
// AppendDispatch writes is read by a direct scan; anything else (other key
// order, spacing, escapes, null lists) goes through encoding/json, with the
// same result. The scan refuses nothing itself: a body it reads with a bad
// position (or one that a later mention of its user replaces) is left to
// encoding/json.
func DecodeDispatch(data []byte) (Dispatch, error) {
	if d, ok := decodeCanonicalDispatch(data); ok && checkPositions(&d) == nil {
		return byUser(d), nil
	}
	return decodeDispatchJSON(data)
}

// DecodeDispatchLazy is DecodeDispatch for a worker that delivers the
// dispatch: it refuses the same bodies, every position checked, but
// leaves Pos nil and keeps the positions by user index (UserPos, HasPos),
// so that only those of the users the worker holds are decoded
// (dispatchpos.go).
func DecodeDispatchLazy(data []byte) (Dispatch, error) {
	if d, ok := decodeCanonicalDispatch(data); ok && checkPositions(&d) == nil {
		return d, nil
	}
	d, err := decodeDispatchJSON(data)
	if err != nil {
		return Dispatch{}, err
	}
	return byIndex(d), nil
}

// decodeDispatchJSON reads data with encoding/json and checks it, every
// position in Pos included.
func decodeDispatchJSON(data []byte) (Dispatch, error) {
	var d Dispatch
	if err := json.Unmarshal(data, &d); err != nil {
		return Dispatch{}, &Error{Code: CodeBadRequest, Message: "dispatch is not a valid JSON object: " + err.Error()}
	}
	if !ValidEventName(d.Event) {
		return Dispatch{}, &Error{Code: CodeBadRequest, Message: "dispatch event must match " + EventPattern}
	}
	if !utf8.Valid(d.Args) {
		// encoding/json keeps a RawMessage's bytes as they are; a socket's
		// text frame may carry only UTF-8 (a client fails it, 1007).
		return Dispatch{}, &Error{Code: CodeBadRequest, Message: "dispatch args are not UTF-8"}
	}
	if string(d.Args) == "null" {
		d.Args = nil
	}
	for user, p := range d.Pos {
		if !ValidPos(p) {
			return Dispatch{}, badPosition(user)
		}
	}
	if d.BPos != "" && !ValidPos(d.BPos) {
		return Dispatch{}, badBPos()
	}
	return d, nil
}

// decodeCanonicalDispatch reads data if it is exactly what AppendDispatch
// writes, with no escaped strings, and valid; ok is false otherwise, and
// then encoding/json decides.
func decodeCanonicalDispatch(data []byte) (d Dispatch, ok bool) {
	if !utf8.Valid(data) || !ValidJSON(data) {
		return d, false
	}
	rest, ok := bytes.CutPrefix(data, []byte(`{"event":`))
	if !ok {
		return d, false
	}
	event, rest, ok := cutPlainString(rest)
	if !ok || !ValidEventName(event) {
		return d, false
	}
	d.Event = event
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"args":`)); !ok || len(rest) == 0 {
		return d, false
	}
	end := valueEnd(rest, 0)
	if args := rest[:end]; !isNull(args) {
		d.Args = append(json.RawMessage(nil), args...)
	}
	rest = rest[end:]
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"users":`)); !ok {
		return d, false
	}
	if d.Users, rest, ok = cutPlainStrings(rest); !ok {
		return d, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"conns":`)); !ok {
		return d, false
	}
	if d.Conns, rest, ok = cutPlainStrings(rest); !ok {
		return d, false
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"skip_users":`)); found {
		if d.SkipUsers, rest, ok = cutPlainStrings(r); !ok {
			return d, false
		}
	}
	switch {
	case bytes.HasPrefix(rest, []byte(`,"broadcast":false`)):
		rest = rest[len(`,"broadcast":false`):]
	case bytes.HasPrefix(rest, []byte(`,"broadcast":true`)):
		rest = rest[len(`,"broadcast":true`):]
		d.Broadcast = true
	default:
		return d, false
	}
	if r, found := bytes.CutPrefix(rest, []byte(TransientField)); found {
		rest, d.Transient = r, true
	}
	if r, found := bytes.CutPrefix(rest, []byte(ExceptField)); found {
		if d.Except, rest, ok = cutPlainStrings(r); !ok {
			return d, false
		}
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"pos":`)); found {
		if d.userPos, rest, ok = cutUserPositions(r, d.Users); !ok {
			return d, false
		}
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"bpos":`)); found {
		if d.BPos, rest, ok = cutPlainString(r); !ok {
			return d, false
		}
	}
	return d, string(rest) == "}"
}

// cutPlainString reads a string without escapes at the start of data.
func cutPlainString(data []byte) (string, []byte, bool) {
	if len(data) == 0 || data[0] != '"' {
		return "", nil, false
	}
	end := bytes.IndexByte(data[1:], '"')
	if end < 0 {
		return "", nil, false
	}
	s := data[1 : 1+end]
	if bytes.IndexByte(s, '\\') >= 0 {
		return "", nil, false
	}
	return string(s), data[end+2:], true
}

// cutPlainStrings reads an array of strings without escapes or spaces at
// the start of data: [] gives an empty, non-nil list, as encoding/json does.
func cutPlainStrings(data []byte) ([]string, []byte, bool) {
	if len(data) < 2 || data[0] != '[' {
		return nil, nil, false
	}
	if data[1] == ']' {
		return []string{}, data[2:], true
	}
	out := make([]string, 0, 1+bytes.Count(data[:valueEnd(data, 0)], []byte(`","`)))
	rest := data[1:]
	for {
		s, r, ok := cutPlainString(rest)
		if !ok || len(r) == 0 {
			return nil, nil, false
		}
		out = append(out, s)
		switch r[0] {
		case ',':
			rest = r[1:]
		case ']':
			return out, r[1:], true
		default:
			return nil, nil, false
		}
	}
}
