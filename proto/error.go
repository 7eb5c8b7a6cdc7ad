package proto

// Error is a wire error: a Code from the contract's closed set and a message
// for a person. It is what a client sees in an error frame's args and what a
// NATS reply carries. Internal error text must never be put into Message.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Error implements the error interface as "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// NewError returns an *Error with the given code and message.
func NewError(code Code, message string) *Error { return &Error{Code: code, Message: message} }
