package proto

// Error is a wire error: a code from the contract's table and a message for a
// person. It is what a client sees in an error frame's args and what a NATS
// reply carries. Internal error text must never be put into Message.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error implements the error interface as "code: message".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// NewError returns an *Error with the given code and message.
func NewError(code, message string) *Error { return &Error{Code: code, Message: message} }
