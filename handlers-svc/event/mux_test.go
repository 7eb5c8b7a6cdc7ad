package event_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

func ok(context.Context, *event.Request) error { return nil }

func TestMuxRoutes(t *testing.T) {
	mux := event.NewMux()
	var got []string
	mux.HandleFunc("a", func(ctx context.Context, r *event.Request) error {
		got = append(got, "a:"+r.User)
		return nil
	})
	mux.Handle("b-2_x", event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		got = append(got, "b:"+r.User)
		return event.BadRequest("args.x must be a string")
	}))

	if err := mux.ServeEvent(context.Background(), &event.Request{Event: "a", User: "alice"}); err != nil {
		t.Fatalf("a: %v", err)
	}
	err := mux.ServeEvent(context.Background(), &event.Request{Event: "b-2_x", User: "bob"})
	if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest {
		t.Fatalf("b: got %v, want bad_request", err)
	}
	if want := []string{"a:alice", "b:bob"}; !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	if want := []string{"a", "b-2_x"}; !slices.Equal(mux.Events(), want) {
		t.Fatalf("Events() = %v, want %v", mux.Events(), want)
	}
}

func TestMuxUnknownEvent(t *testing.T) {
	tests := []struct {
		event, wantMessage string
	}{
		{"nope", "no handler for event nope"},
		{"A", "no handler for event A"},
		{"bad name", "no handler for this event"}, // never echo an invalid name
	}
	mux := event.NewMux()
	mux.HandleFunc("a", ok)
	for _, tt := range tests {
		err := mux.ServeEvent(context.Background(), &event.Request{Event: tt.event, User: "u"})
		w := event.WireError(err)
		if w == nil || w.Code != proto.CodeUnknownEvent || w.Message != tt.wantMessage {
			t.Errorf("%q: got %+v, want unknown_event %q", tt.event, w, tt.wantMessage)
		}
	}
}

func TestMuxRegistrationPanics(t *testing.T) {
	tests := []struct {
		name    string
		do      func(m *event.Mux)
		wantMsg string
	}{
		{"empty name", func(m *event.Mux) { m.HandleFunc("", ok) }, "invalid event name"},
		{"starts with digit", func(m *event.Mux) { m.HandleFunc("1a", ok) }, "invalid event name"},
		{"dot", func(m *event.Mux) { m.HandleFunc("a.b", ok) }, "invalid event name"},
		{"too long", func(m *event.Mux) { m.HandleFunc("a"+strings.Repeat("b", 64), ok) }, "invalid event name"},
		{"nil handler", func(m *event.Mux) { m.Handle("a", nil) }, "nil handler"},
		{"nil func", func(m *event.Mux) { m.HandleFunc("a", nil) }, "nil handler"},
		{"nil HandlerFunc", func(m *event.Mux) { m.Handle("a", event.HandlerFunc(nil)) }, "nil handler"},
		{"duplicate", func(m *event.Mux) { m.HandleFunc("dup", ok); m.HandleFunc("dup", ok) }, "multiple registrations"},
		{"nil middleware", func(m *event.Mux) { m.Use(nil) }, "nil middleware"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				p := recover()
				if p == nil {
					t.Fatal("no panic")
				}
				if msg, _ := p.(string); !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("panic %v, want it to contain %q", p, tt.wantMsg)
				}
			}()
			tt.do(event.NewMux())
		})
	}
}

func TestMuxMiddlewareOrder(t *testing.T) {
	var trace []string
	mw := func(name string) event.Middleware {
		return func(next event.Handler) event.Handler {
			return event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
				trace = append(trace, name+">")
				err := next.ServeEvent(ctx, r)
				trace = append(trace, "<"+name)
				return err
			})
		}
	}
	mux := event.NewMux()
	mux.Use(mw("a"), mw("b"))
	mux.Use(mw("c"))
	mux.HandleFunc("x", func(context.Context, *event.Request) error {
		trace = append(trace, "x")
		return nil
	})

	if err := mux.ServeEvent(context.Background(), &event.Request{Event: "x"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a>", "b>", "c>", "x", "<c", "<b", "<a"}; !slices.Equal(trace, want) {
		t.Fatalf("trace = %v, want %v", trace, want)
	}

	// Middleware also wraps unknown events, so they are logged and counted.
	trace = nil
	err := mux.ServeEvent(context.Background(), &event.Request{Event: "y"})
	if event.WireError(err).Code != proto.CodeUnknownEvent {
		t.Fatalf("unknown: %v", err)
	}
	if want := []string{"a>", "b>", "c>", "<c", "<b", "<a"}; !slices.Equal(trace, want) {
		t.Fatalf("trace = %v, want %v", trace, want)
	}
}

func TestMuxConcurrentServe(t *testing.T) {
	mux := event.NewMux()
	mux.Use(func(next event.Handler) event.Handler { return next })
	mux.HandleFunc("a", ok)
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				if err := mux.ServeEvent(context.Background(), &event.Request{Event: "a"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}
