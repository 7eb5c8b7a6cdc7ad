package middleware_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/event/middleware"
	"github.com/switchboard/switchboard/proto"
)

func panics(context.Context, *event.Request) error { panic("boom: secret state") }

func TestRecover(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := middleware.Recover(zap.New(core))(event.HandlerFunc(panics))

	err := h.ServeEvent(context.Background(), eventtest.NewRequest("crash", "alice", nil))

	w := event.WireError(err)
	if w == nil || w.Code != proto.CodeHandlerError || w.Message != "handler failed" {
		t.Fatalf("got %+v, want handler_error \"handler failed\"", w)
	}
	entries := logs.FilterMessage("handler panicked").All()
	if len(entries) != 1 {
		t.Fatalf("logged %d panics, want 1", len(entries))
	}
	e := entries[0]
	fields := e.ContextMap()
	if e.Level != zapcore.ErrorLevel || fields["event"] != "crash" || fields["user"] != "alice" || fields["conn"] != "alice-conn" {
		t.Fatalf("entry %v %v", e.Level, fields)
	}
	if fields["panic"] != "boom: secret state" {
		t.Fatalf("panic field %v", fields["panic"])
	}
	if stack, _ := fields["stack"].(string); !strings.Contains(stack, "middleware_test.panics") {
		t.Fatalf("stack does not show the panicking function:\n%s", stack)
	}
}

func TestRecoverPassesResults(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	want := event.BadRequest("args.x must be a string")
	h := middleware.Recover(zap.New(core))(event.HandlerFunc(func(context.Context, *event.Request) error { return want }))
	if err := h.ServeEvent(context.Background(), eventtest.NewRequest("e", "u", nil)); !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	if logs.Len() != 0 {
		t.Fatalf("logged %v", logs.All())
	}
}

func TestLog(t *testing.T) {
	tests := []struct {
		name      string
		handler   event.HandlerFunc
		wantLevel zapcore.Level
		wantCode  string
	}{
		{"ok", func(context.Context, *event.Request) error { return nil }, zapcore.DebugLevel, "ok"},
		{"bad request", func(context.Context, *event.Request) error { return event.BadRequest("args.to must be a string") }, zapcore.InfoLevel, "bad_request"},
		{"untyped", func(context.Context, *event.Request) error { return errors.New("db: secret") }, zapcore.InfoLevel, "handler_error"},
		{"deadline", func(context.Context, *event.Request) error { return context.DeadlineExceeded }, zapcore.InfoLevel, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			h := middleware.Log(zap.New(core))(tt.handler)
			r := eventtest.NewRequest("sendMessage", "bob", nil)
			r.Ref = "r7"
			_ = h.ServeEvent(context.Background(), r)
			entries := logs.All()
			if len(entries) != 1 {
				t.Fatalf("logged %d entries, want 1", len(entries))
			}
			e := entries[0]
			f := e.ContextMap()
			if e.Level != tt.wantLevel || f["code"] != tt.wantCode || f["event"] != "sendMessage" || f["user"] != "bob" || f["conn"] != "bob-conn" || f["ref"] != "r7" {
				t.Fatalf("entry %v %v, want level %v code %s", e.Level, f, tt.wantLevel, tt.wantCode)
			}
			if _, ok := f["duration"]; !ok {
				t.Fatal("no duration field")
			}
			if strings.Contains(e.Message+stringify(f), "secret") {
				t.Fatal("access log carries error text")
			}
		})
	}
}

func TestLogAndRecoverInEitherOrder(t *testing.T) {
	for _, logOutside := range []bool{true, false} {
		core, logs := observer.New(zapcore.DebugLevel)
		log := zap.New(core)
		mux := event.NewMux()
		if logOutside {
			mux.Use(middleware.Log(log), middleware.Recover(log))
		} else {
			mux.Use(middleware.Recover(log), middleware.Log(log))
		}
		mux.HandleFunc("crash", panics)

		err := mux.ServeEvent(context.Background(), eventtest.NewRequest("crash", "u", nil))
		if w := event.WireError(err); w.Code != proto.CodeHandlerError {
			t.Fatalf("logOutside=%v: got %v", logOutside, err)
		}
		served := logs.FilterMessage("event served").All()
		if len(served) != 1 {
			t.Fatalf("logOutside=%v: %d access lines", logOutside, len(served))
		}
		wantCode := "panic"
		if logOutside {
			wantCode = "handler_error"
		}
		if got := served[0].ContextMap()["code"]; got != wantCode {
			t.Fatalf("logOutside=%v: code %v, want %s", logOutside, got, wantCode)
		}
		if logs.FilterMessage("handler panicked").Len() != 1 {
			t.Fatalf("logOutside=%v: panic not logged once", logOutside)
		}
	}
}

func stringify(m map[string]any) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(k)
		if s, ok := v.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}
