package proto

import (
	"strconv"
	"strings"
)

// The positions of a dispatch a worker decodes. In FANOUT_MODE=shared
// every worker decodes every body, one of up to 128 users (a 1,000-member
// room is eight of them) or more from another publisher, while it holds
// sockets of a few of those users. So DecodeDispatchLazy does not build a
// map of all of them: it keeps each position as a piece of one copy of the
// body from its "pos" object on, by the index of its user, and checks each
// without decoding it (ValidPos). A worker then decodes only the positions
// of the users it holds, as it delivers to them (UserPos). A body with any
// position that is not one is still refused whole, by every worker alike
// (docs/protocol.md section 4).

// HasPos reports whether d carries positions for users: a non-empty Pos,
// or, read by DecodeDispatchLazy, a non-empty "pos" object and Users.
func (d *Dispatch) HasPos() bool { return len(d.Pos) > 0 || len(d.userPos) > 0 }

// UserPos returns the position d gives d.Users[i], "" for none, as a
// string of its own (holding it holds nothing else of the body). It reads
// Pos when it is set. A body read by DecodeDispatchLazy that names a user
// more than once may give it a position at each mention; the user's
// position is then that of its last mention, as in Pos (encoding/json's
// map), and a reader that wants it asks for the user's last index (the
// hub delivers in reverse order of Users for that).
func (d *Dispatch) UserPos(i int) string {
	if len(d.Pos) > 0 {
		return strings.Clone(d.Pos[d.Users[i]])
	}
	if len(d.userPos) == 0 {
		return ""
	}
	return strings.Clone(d.userPos[i])
}

// appendUserPos appends the "pos" member of d as DecodeDispatchLazy read
// it: its users' positions in the order of Users.
func appendUserPos(dst []byte, d *Dispatch) []byte {
	dst = append(dst, `,"pos":{`...)
	n := 0
	for i, p := range d.userPos {
		if p == "" {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = AppendString(dst, d.Users[i])
		dst = append(dst, ':')
		dst = AppendString(dst, p)
	}
	return append(dst, '}')
}

// byUser returns d, read by the scan, with its positions in Pos, as
// encoding/json gives them: a user named twice has its last.
func byUser(d Dispatch) Dispatch {
	if d.userPos == nil {
		return d
	}
	d.Pos = make(map[string]string, len(d.userPos))
	for i, p := range d.userPos {
		d.Pos[d.Users[i]] = p
	}
	d.userPos = nil
	return d
}

// byIndex returns d, read by encoding/json, with its positions by user
// index: those of users not in Users were checked and are dropped (no
// socket gets them).
func byIndex(d Dispatch) Dispatch {
	if len(d.Pos) == 0 {
		if d.Pos != nil {
			d.Pos, d.userPos = nil, []string{}
		}
		return d
	}
	d.userPos = make([]string, len(d.Users))
	for i, u := range d.Users {
		d.userPos[i] = d.Pos[u]
	}
	d.Pos = nil
	return d
}

// checkPositions refuses a dispatch read by the scan whose positions are
// not positions.
func checkPositions(d *Dispatch) error {
	for i, p := range d.userPos {
		if !ValidPos(p) {
			return badPosition(d.Users[i])
		}
	}
	if d.BPos != "" && !ValidPos(d.BPos) {
		return badBPos()
	}
	return nil
}

func badPosition(user string) error {
	return &Error{Code: CodeBadRequest, Message: "dispatch position of " + strconv.Quote(user) + " is not a position"}
}

func badBPos() error { return &Error{Code: CodeBadRequest, Message: "dispatch bpos is not a position"} }

// cutUserPositions reads the "pos" object at the start of data if it is
// as the publish script (and AppendDispatch) writes it: strings without
// escapes or spaces, one keyed by each of users, in their order; ok is
// false otherwise, and then encoding/json decides. {} gives an empty list.
// data must be valid JSON from its start on.
func cutUserPositions(data []byte, users []string) (pos []string, rest []byte, ok bool) {
	if len(data) < 2 || data[0] != '{' {
		return nil, nil, false
	}
	if data[1] == '}' {
		return []string{}, data[2:], true
	}
	if len(users) == 0 {
		return nil, nil, false
	}
	// One copy, of the rest of the body (the object is last but for a
	// bpos, never beside it), so the object is scanned once; the
	// positions are pieces of it.
	obj := string(data[1:])
	pos = make([]string, len(users))
	for i, user := range users {
		// "<user>":"<position>" then , or the closing brace.
		if len(obj) < len(user)+5 || obj[0] != '"' || obj[1:1+len(user)] != user || obj[1+len(user)] != '"' ||
			obj[2+len(user)] != ':' || obj[3+len(user)] != '"' {
			return nil, nil, false
		}
		obj = obj[4+len(user):]
		// An empty position is none: encoding/json's path refuses it.
		q := strings.IndexByte(obj, '"')
		if q <= 0 || strings.IndexByte(obj[:q], '\\') >= 0 || q+1 >= len(obj) {
			return nil, nil, false
		}
		pos[i], obj = obj[:q], obj[q+1:]
		if last := i == len(users)-1; (!last && obj[0] != ',') || (last && obj[0] != '}') {
			return nil, nil, false
		}
		obj = obj[1:]
	}
	return pos, data[len(data)-len(obj):], true
}
