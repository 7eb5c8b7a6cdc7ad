package proto

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Request is the body of a NATS request from the gateway to handlers-svc on
// subject "handlers.<event>" (docs/protocol.md section 3).
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
// and a user. Args of null are returned as the JSON literal null.
//
// handlers-svc decodes every request, so the exact form AppendRequest writes
// is read by a direct scan; anything else (other key order, spacing,
// escapes) goes through encoding/json, with the same result.
func DecodeRequest(data []byte) (Request, error) {
	if r, ok := decodeCanonicalRequest(data); ok {
		return r, nil
	}
	return decodeRequestJSON(data)
}

// decodeCanonicalRequest reads data if it is exactly what AppendRequest
// writes, with no escaped strings, and valid; ok is false otherwise, and
// then encoding/json decides.
func decodeCanonicalRequest(data []byte) (r Request, ok bool) {
	if !utf8.Valid(data) || !ValidJSON(data) {
		return r, false
	}
	rest, ok := bytes.CutPrefix(data, []byte(`{"event":`))
	if !ok {
		return r, false
	}
	if r.Event, rest, ok = cutPlainString(rest); !ok || !ValidEventName(r.Event) {
		return Request{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"args":`)); !ok || len(rest) == 0 {
		return Request{}, false
	}
	end := valueEnd(rest, 0)
	args := rest[:end]
	rest = rest[end:]
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"user":`)); !ok {
		return Request{}, false
	}
	if r.User, rest, ok = cutPlainString(rest); !ok || r.User == "" {
		return Request{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"conn":`)); !ok {
		return Request{}, false
	}
	if r.Conn, rest, ok = cutPlainString(rest); !ok {
		return Request{}, false
	}
	if after, found := bytes.CutPrefix(rest, []byte(`,"ref":`)); found {
		if r.Ref, rest, ok = cutPlainString(after); !ok {
			return Request{}, false
		}
	}
	if string(rest) != "}" {
		return Request{}, false
	}
	r.Args = append(json.RawMessage(nil), args...)
	return r, true
}

func decodeRequestJSON(data []byte) (Request, error) {
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

// Reply is the body of a handlers-svc reply: {"ok":true}, or with the
// handler's result {"ok":true,"result":<any JSON>}, or
// {"error":{"code":"...","message":"..."}} (docs/protocol.md section 3).
type Reply struct {
	OK     bool            `json:"ok,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

var (
	replyOK     = []byte(`{"ok":true}`)
	replyResult = []byte(`{"ok":true,"result":`)
)

// AppendReply appends the reply for err to dst: {"ok":true} when err is nil.
func AppendReply(dst []byte, e *Error) []byte {
	if e == nil {
		return append(dst, replyOK...)
	}
	dst = append(dst, `{"error":`...)
	dst = appendErrorObject(dst, e)
	return append(dst, '}')
}

// AppendResult appends the reply of a success with result to dst:
// {"ok":true,"result":<result>}, or {"ok":true} when result is empty (nil
// or zero-length). result must be valid JSON.
func AppendResult(dst []byte, result json.RawMessage) []byte {
	if len(result) == 0 {
		return append(dst, replyOK...)
	}
	dst = append(dst, replyResult...)
	dst = append(dst, result...)
	return append(dst, '}')
}

// DecodeReply parses a reply body. It returns nil for a success, the carried
// *Error for a failure, and a handler_error *Error for a malformed reply.
func DecodeReply(data []byte) *Error {
	_, e := DecodeResult(data)
	return e
}

// MaxErrorMessage is the longest error message DecodeResult passes on, in
// bytes: a longer one is cut, at a character, as a result is bounded by
// MaxResult, so that no responder can make an error frame that fills a
// socket's send queue.
const MaxErrorMessage = 1024

// maxErrorCode is the longest error code DecodeResult takes: the codes
// are short words; a longer one makes the reply malformed.
const maxErrorCode = 64

// malformedReply answers a reply that is not one.
func malformedReply() *Error {
	return &Error{Code: CodeHandlerError, Message: "handler sent a malformed reply"}
}

// DecodeResult parses a reply body like DecodeReply and also returns the
// result of a success: nil when the reply carries none (or "result" is
// null, which is no result either). The result is a slice of data in the
// form AppendResult writes, else a copy. A result that is not UTF-8
// makes the reply malformed (its ack goes out as a text frame, which a
// client must fail the connection for), and an error message is cut to
// MaxErrorMessage bytes.
func DecodeResult(data []byte) (json.RawMessage, *Error) {
	if bytes.Equal(data, replyOK) {
		return nil, nil
	}
	if rest, ok := bytes.CutPrefix(data, replyResult); ok && len(rest) > 1 && rest[len(rest)-1] == '}' {
		// The exact form AppendResult writes: one valid value, then "}".
		v := rest[:len(rest)-1]
		if end := valueEnd(v, 0); end == len(v) && ValidJSON(v) && !isNull(v) && utf8.Valid(v) {
			return v, nil
		}
	}
	var r Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, malformedReply()
	}
	switch {
	case r.Error != nil && r.Error.Code != "":
		if len(r.Error.Code) > maxErrorCode {
			return nil, malformedReply()
		}
		if len(r.Error.Message) > MaxErrorMessage {
			r.Error.Message = cutUTF8(r.Error.Message, MaxErrorMessage)
		}
		return nil, r.Error
	case r.OK:
		if isNull(r.Result) {
			r.Result = nil
		}
		if !utf8.Valid(r.Result) {
			return nil, malformedReply()
		}
		return r.Result, nil
	default:
		return nil, malformedReply()
	}
}

// cutUTF8 returns the longest prefix of s, valid UTF-8 as s is, of at
// most n bytes.
func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
