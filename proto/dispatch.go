package proto

import (
	"encoding/json"
)

// Dispatch is a message handlers-svc publishes on Channel for every gateway
// worker (PROTOCOL section 4): deliver Event with Args to every local socket
// of each of Users, to each of Conns, or to every local socket if Broadcast.
type Dispatch struct {
	Event     string          `json:"event"`
	Args      json.RawMessage `json:"args"`
	Users     []string        `json:"users"`
	Conns     []string        `json:"conns"`
	Broadcast bool            `json:"broadcast"`
}

// AppendDispatch appends the JSON body of d to dst. Nil lists are encoded as
// empty arrays and absent (nil or zero-length) args as null.
func AppendDispatch(dst []byte, d *Dispatch) []byte {
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
	if d.Broadcast {
		dst = append(dst, `,"broadcast":true}`...)
	} else {
		dst = append(dst, `,"broadcast":false}`...)
	}
	return dst
}

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
// EventPattern, and args, when present, be valid JSON; args of null are
// returned as nil.
func DecodeDispatch(data []byte) (Dispatch, error) {
	var d Dispatch
	if err := json.Unmarshal(data, &d); err != nil {
		return Dispatch{}, &Error{Code: CodeBadRequest, Message: "dispatch is not a valid JSON object: " + err.Error()}
	}
	if !ValidEventName(d.Event) {
		return Dispatch{}, &Error{Code: CodeBadRequest, Message: "dispatch event must match " + EventPattern}
	}
	if string(d.Args) == "null" {
		d.Args = nil
	}
	return d, nil
}
