package event

import (
	"context"
	"errors"
	"reflect"
)

// Validator is implemented by a typed handler's args that check
// themselves (required fields, lengths, ranges): Typed calls Validate once
// they are decoded. Its error is what the client sees: an *Error keeps its
// code and message, any other error becomes bad_request with its text, so
// name the field in it ("args.room is required").
type Validator interface {
	Validate() error
}

// NoResult is the result type of a typed handler that answers with a
// plain ack: it is sent as no result at all.
type NoResult struct{}

// MarshalJSON encodes NoResult as null, which is no result.
func (NoResult) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// Typed adapts fn, a function of typed args to a typed result, to a
// Handler, as HandlerFunc adapts an untyped one. The Handler decodes the
// request's args into a new In with Request.Decode (a value of the wrong
// type is already a bad_request naming the field), calls its Validate
// method when In or *In has one, calls fn, and responds with its result
// (Request.Respond): the client's ack carries it. An error from fn is
// returned as it is, and then no result is sent. Typed panics on a nil fn.
// In may be a pointer type: absent or null args are then a pointer to a
// zero value, as they are a zero value for a struct In, never nil.
//
//	mux.Handle("sendMessage", event.Typed(chat.SendMessage))
//
//	func (c *Chat) SendMessage(ctx context.Context, r *event.Request, in SendArgs) (Sent, error)
func Typed[In, Out any](fn func(ctx context.Context, r *Request, in In) (Out, error)) Handler {
	if fn == nil {
		panic("event: nil typed handler")
	}
	inType := reflect.TypeFor[In]()
	return HandlerFunc(func(ctx context.Context, r *Request) error {
		var in In
		if err := r.Decode(&in); err != nil {
			return err
		}
		if inType.Kind() == reflect.Pointer {
			// Absent or null args left a pointer In nil: give Validate
			// and fn the empty args a struct In would have.
			if v := reflect.ValueOf(&in).Elem(); v.IsNil() {
				v.Set(reflect.New(inType.Elem()))
			}
		}
		if err := validate(&in); err != nil {
			return err
		}
		out, err := fn(ctx, r, in)
		if err != nil {
			return err
		}
		return r.Respond(out)
	})
}

// validate runs the Validate method of *in or in, if it has one.
func validate[In any](in *In) error {
	var err error
	switch v := any(in).(type) {
	case Validator:
		err = v.Validate()
	default:
		if v, ok := any(*in).(Validator); ok {
			err = v.Validate()
		}
	}
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return BadRequest("%s", err.Error())
}
