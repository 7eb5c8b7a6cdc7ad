package proto

import (
	"bytes"
	"encoding/json"
)

// Request is the body of a NATS request from the gateway to handlers-svc on
// subject "handlers.<event>" (PROTOCOL section 3).
type Request struct {
	Event string          `json:"event"`
	Args  json.RawMessage `json:"args"`
	User  string          `json:"user"` // the verified user id of the socket
	Conn  string          `json:"conn"` // the connection id the envelope arrived on
	Ref   string          `json:"ref,omitempty"`
}

// AppendRequest appends the JSON body of a request to dst. Absent (nil or
// zero-length) args are encoded as null.
func AppendRequest(dst []byte, r *Request) []byte {
	dst = append(dst, `{"event":`...)
	dst = AppendString(dst, r.Event)
	dst = append(dst, `,"args":`...)
	if len(r.Args) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, r.Args...)
	}
	dst = append(dst, `,"user":`...)
	dst = AppendString(dst, r.User)
	dst = append(dst, `,"conn":`...)
	dst = AppendString(dst, r.Conn)
	if r.Ref != "" {
		dst = append(dst, `,"ref":`...)
		dst = AppendString(dst, r.Ref)
	}
	return append(dst, '}')
}

// DecodeRequest parses a request body and checks that it names a valid event
// and a user.
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	if err := json.Unmarshal(data, &r); err != nil {
		return r, &Error{Code: CodeBadRequest, Message: "request is not a valid JSON object"}
	}
	if !ValidEventName(r.Event) {
		return r, &Error{Code: CodeBadRequest, Message: "request event must match " + EventPattern}
	}
	if r.User == "" {
		return r, &Error{Code: CodeBadRequest, Message: "request user is required"}
	}
	return r, nil
}

// Reply is the body of a handlers-svc reply: {"ok":true} or
// {"error":{"code":"...","message":"..."}}.
type Reply struct {
	OK    bool   `json:"ok,omitempty"`
	Error *Error `json:"error,omitempty"`
}

var replyOK = []byte(`{"ok":true}`)

// AppendReply appends the reply for err to dst: {"ok":true} when err is nil.
func AppendReply(dst []byte, e *Error) []byte {
	if e == nil {
		return append(dst, replyOK...)
	}
	dst = append(dst, `{"error":`...)
	dst = appendErrorObject(dst, e)
	return append(dst, '}')
}

// DecodeReply parses a reply body. It returns nil for a success, the carried
// *Error for a failure, and a handler_error *Error for a malformed reply.
func DecodeReply(data []byte) *Error {
	if bytes.Equal(data, replyOK) {
		return nil
	}
	var r Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return &Error{Code: CodeHandlerError, Message: "handler sent a malformed reply"}
	}
	switch {
	case r.Error != nil && r.Error.Code != "":
		return r.Error
	case r.OK:
		return nil
	default:
		return &Error{Code: CodeHandlerError, Message: "handler sent a malformed reply"}
	}
}
