package event_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// TestGroup: a group's middleware wraps its handlers only, inside the
// Mux's middleware, the first outermost; nested groups add theirs inside.
func TestGroup(t *testing.T) {
	var trace []string
	mw := func(name string) event.Middleware {
		return func(next event.Handler) event.Handler {
			return event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
				trace = append(trace, name)
				return next.ServeEvent(ctx, r)
			})
		}
	}
	deny := func(next event.Handler) event.Handler {
		return event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
			if r.User != "admin" {
				return event.Forbidden("admins only")
			}
			return next.ServeEvent(ctx, r)
		})
	}
	mux := event.NewMux()
	mux.Use(mw("mux"))
	g := mux.Group(mw("g1"), mw("g2"))
	g.HandleFunc("inG", func(context.Context, *event.Request) error { trace = append(trace, "inG"); return nil })
	admin := g.Group(deny)
	admin.HandleFunc("ban", func(context.Context, *event.Request) error { trace = append(trace, "ban"); return nil })
	mux.HandleFunc("plain", func(context.Context, *event.Request) error { trace = append(trace, "plain"); return nil })

	for _, tt := range []struct {
		event, user string
		want        []string
		code        proto.Code
	}{
		{"inG", "u", []string{"mux", "g1", "g2", "inG"}, ""},
		{"plain", "u", []string{"mux", "plain"}, ""},
		{"ban", "admin", []string{"mux", "g1", "g2", "ban"}, ""},
		{"ban", "u", []string{"mux", "g1", "g2"}, proto.CodeForbidden},
	} {
		trace = nil
		err := mux.ServeEvent(context.Background(), &event.Request{Event: tt.event, User: tt.user})
		if w := event.WireError(err); (w == nil) != (tt.code == "") || (w != nil && w.Code != tt.code) {
			t.Errorf("%s as %s: %v, want code %q", tt.event, tt.user, err, tt.code)
		}
		if !slices.Equal(trace, tt.want) {
			t.Errorf("%s as %s: trace %v, want %v", tt.event, tt.user, trace, tt.want)
		}
	}
	if want := []string{"ban", "inG", "plain"}; !slices.Equal(mux.Events(), want) {
		t.Errorf("Events() = %v, want %v", mux.Events(), want)
	}
}

func TestGroupPanics(t *testing.T) {
	ok := func(context.Context, *event.Request) error { return nil }
	for name, do := range map[string]func(*event.Mux){
		"nil middleware":        func(m *event.Mux) { m.Group(nil) },
		"nil nested middleware": func(m *event.Mux) { m.Group().Group(nil) },
		"nil handler":           func(m *event.Mux) { m.Group().Handle("a", nil) },
		"nil func":              func(m *event.Mux) { m.Group().HandleFunc("a", nil) },
		"duplicate":             func(m *event.Mux) { m.HandleFunc("a", ok); m.Group().HandleFunc("a", ok) },
		"invalid name":          func(m *event.Mux) { m.Group().HandleFunc("a b", ok) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if p, _ := recover().(string); !strings.HasPrefix(p, "event: ") {
					t.Fatalf("panic %q, want an event: panic", p)
				}
			}()
			do(event.NewMux())
		})
	}
}
