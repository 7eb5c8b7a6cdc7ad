package event_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/proto"
)

// greetArgs check themselves, with a pointer receiver.
type greetArgs struct {
	Name  string   `json:"name"`
	Times int      `json:"times"`
	Tags  []string `json:"tags"`
}

func (a *greetArgs) Validate() error {
	switch {
	case a.Name == "":
		return errors.New("args.name is required")
	case a.Times > 3:
		return event.Errorf(proto.CodeForbidden, "at most 3 greetings")
	}
	return nil
}

type greeting struct {
	Text string `json:"text"`
	For  string `json:"for"`
}

func greet(_ context.Context, r *event.Request, in greetArgs) (greeting, error) {
	if in.Name == "boom" {
		return greeting{Text: "never sent"}, event.Unavailable("greeter down")
	}
	return greeting{Text: strings.Repeat("hi ", max(in.Times, 1)) + in.Name, For: r.User}, nil
}

// valueArgs check themselves, with a value receiver.
type valueArgs struct {
	N int `json:"n"`
}

func (a valueArgs) Validate() error {
	if a.N < 0 {
		return fmt.Errorf("args.n must not be negative")
	}
	return nil
}

// TestTyped: the adapter decodes, validates, calls the function and
// responds with its result; every failure is the wire error a client
// should see, and a failed request carries no result.
func TestTyped(t *testing.T) {
	h := event.Typed(greet)
	tests := []struct {
		name, args string
		wantCode   proto.Code // "" = success
		wantMsg    string     // the error message, or the result's JSON
	}{
		{"ok", `{"name":"bob","times":2}`, "", `{"text":"hi hi bob","for":"alice"}`},
		{"wrong type names the field", `{"name":5}`, proto.CodeBadRequest, "args.name must be a string"},
		{"nested wrong type", `{"name":"bob","tags":["a",1]}`, proto.CodeBadRequest, "args.tags must be an array of strings"},
		{"not an object", `[1]`, proto.CodeBadRequest, "args must be an object"},
		{"absent args are validated", ``, proto.CodeBadRequest, "args.name is required"},
		{"validate's plain error is bad_request", `{"times":1}`, proto.CodeBadRequest, "args.name is required"},
		{"validate's *Error keeps its code", `{"name":"bob","times":4}`, proto.CodeForbidden, "at most 3 greetings"},
		{"the function's error", `{"name":"boom"}`, proto.CodeUnavailable, "greeter down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := eventtest.NewRequest("greet", "alice", nil)
			if tt.args != "" {
				r.Args = json.RawMessage(tt.args)
			}
			err := h.ServeEvent(context.Background(), r)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(r.Result()) != tt.wantMsg {
					t.Fatalf("result %s, want %s", r.Result(), tt.wantMsg)
				}
				got, err := eventtest.Result[greeting](r)
				if err != nil || got.For != "alice" {
					t.Fatalf("eventtest.Result = %+v, %v", got, err)
				}
				return
			}
			if w := event.WireError(err); w == nil || w.Code != tt.wantCode || w.Message != tt.wantMsg {
				t.Fatalf("got %+v, want %s %q", w, tt.wantCode, tt.wantMsg)
			}
			if r.Result() != nil {
				t.Fatalf("a failed request carries the result %s", r.Result())
			}
		})
	}
}

// TestTypedPointerArgs: a function that takes its args by pointer gets
// absent or null args as an empty struct, as one that takes them by value
// does, never a nil pointer: its Validate (pointer receiver) and the
// function itself would dereference it and panic.
func TestTypedPointerArgs(t *testing.T) {
	h := event.Typed(func(_ context.Context, r *event.Request, in *greetArgs) (greeting, error) {
		return greeting{Text: "hi " + in.Name, For: r.User}, nil
	})
	for _, args := range []string{"", "null", "{}"} {
		r := eventtest.NewRequest("greet", "alice", nil)
		if args != "" {
			r.Args = json.RawMessage(args)
		}
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("args %q: panic %v", args, p)
				}
			}()
			err = h.ServeEvent(context.Background(), r)
		}()
		if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || w.Message != "args.name is required" {
			t.Errorf("args %q: got %v, want bad_request args.name is required", args, err)
		}
	}
	r := eventtest.NewRequest("greet", "alice", map[string]any{"name": "bob"})
	if err := h.ServeEvent(context.Background(), r); err != nil || string(r.Result()) != `{"text":"hi bob","for":"alice"}` {
		t.Fatalf("got %s, %v", r.Result(), err)
	}
}

func TestTypedValueValidator(t *testing.T) {
	h := event.Typed(func(_ context.Context, _ *event.Request, in valueArgs) (int, error) { return in.N * 2, nil })
	r := eventtest.NewRequest("double", "u", map[string]int{"n": 21})
	if err := h.ServeEvent(context.Background(), r); err != nil || string(r.Result()) != "42" {
		t.Fatalf("got %s, %v; want 42", r.Result(), err)
	}
	r = eventtest.NewRequest("double", "u", map[string]int{"n": -1})
	if w := event.WireError(h.ServeEvent(context.Background(), r)); w == nil || w.Code != proto.CodeBadRequest || w.Message != "args.n must not be negative" {
		t.Fatalf("got %+v", w)
	}
}

// TestTypedNoResult: NoResult, a nil pointer and a nil result are a plain
// ack; a result that cannot be marshalled is a programming error.
func TestTypedNoResult(t *testing.T) {
	ctx := context.Background()
	for name, h := range map[string]event.Handler{
		"NoResult":    event.Typed(func(context.Context, *event.Request, struct{}) (event.NoResult, error) { return event.NoResult{}, nil }),
		"nil pointer": event.Typed(func(context.Context, *event.Request, struct{}) (*greeting, error) { return nil, nil }),
		"nil any":     event.Typed(func(context.Context, *event.Request, struct{}) (any, error) { return nil, nil }),
		"raw null": event.Typed(func(context.Context, *event.Request, struct{}) (json.RawMessage, error) {
			return json.RawMessage("null"), nil
		}),
	} {
		r := eventtest.NewRequest("e", "u", nil)
		if err := h.ServeEvent(ctx, r); err != nil || r.Result() != nil {
			t.Errorf("%s: result %s, %v; want none", name, r.Result(), err)
		}
		if _, err := eventtest.Result[any](r); err == nil {
			t.Errorf("%s: eventtest.Result found a result", name)
		}
	}
	h := event.Typed(func(context.Context, *event.Request, struct{}) (chan int, error) { return make(chan int), nil })
	if w := event.WireError(h.ServeEvent(ctx, eventtest.NewRequest("e", "u", nil))); w.Code != proto.CodeHandlerError {
		t.Fatalf("unmarshallable result: %+v, want handler_error", w)
	}
}

func TestTypedNilPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	event.Typed[struct{}, int](nil)
}

// TestRespond: a result is marshalled at once, replaced by a later call,
// and seen by middleware once the handler returns.
func TestRespond(t *testing.T) {
	var seen []string
	mux := event.NewMux()
	mux.Use(func(next event.Handler) event.Handler {
		return event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
			err := next.ServeEvent(ctx, r)
			seen = append(seen, string(r.Result()))
			return err
		})
	})
	mux.HandleFunc("count", func(_ context.Context, r *event.Request) error {
		v := map[string]int{"n": 1}
		if err := r.Respond(v); err != nil {
			return err
		}
		v["n"] = 2 // already marshalled: no effect
		return r.Respond(json.RawMessage(`{"n":3}`))
	})
	mux.HandleFunc("bad", func(_ context.Context, r *event.Request) error {
		return r.Respond(json.RawMessage(`{`))
	})
	r := eventtest.NewRequest("count", "u", nil)
	if err := mux.ServeEvent(context.Background(), r); err != nil || string(r.Result()) != `{"n":3}` {
		t.Fatalf("result %s, %v", r.Result(), err)
	}
	if err := mux.ServeEvent(context.Background(), eventtest.NewRequest("bad", "u", nil)); err == nil {
		t.Fatal("invalid raw JSON accepted as a result")
	}
	if want := []string{`{"n":3}`, ``}; !slices.Equal(seen, want) {
		t.Fatalf("middleware saw %q, want %q", seen, want)
	}
}
