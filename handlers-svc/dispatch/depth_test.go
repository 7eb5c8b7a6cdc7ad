package dispatch_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestDispatchEveryGatewayCanDecode: args are checked with proto.ValidJSON, which takes up to 10,000 levels
// of nesting (encoding/json's limit), but the published body wraps them
// in one more object. Args nested exactly 10,000 deep are taken (the
// dispatch succeeds, with positions), and every gateway worker then fails
// to decode the body (proto.DecodeDispatchLazy: ValidJSON of the body and
// encoding/json both refuse depth 10,001) and drops it as malformed, so no
// socket gets it live: a transient one (ToConns, Transient) is lost with
// no error to anyone; a recorded one reaches a device only through a
// later gap fill or a resume (the stream read does not re-check args).
// A handler can be led to it by a client: the gateway takes an envelope
// of depth 10,000, so args of depth 9,999, which a handler that relays
// them inside an object of its own (a json.RawMessage field) makes 10,000
// deep. The dispatch API is not affected (its body decode refuses them).
//
// Expected: what dispatch publishes, every gateway can decode; args it
// cannot are refused with bad_request.
func TestDispatchEveryGatewayCanDecode(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := newClient(t, srv.Addr())
	ps := subscribe(t, rdb)
	d := dispatch.New(rdb, dispatch.Options{Window: 2 * time.Minute})
	ctx := context.Background()

	// Client args as deep as the gateway lets through (the envelope is one
	// level more), relayed by a handler inside an object of its own.
	fromClient := json.RawMessage(strings.Repeat("[", 9999) + strings.Repeat("]", 9999))
	relayed := struct {
		From string          `json:"from"`
		Data json.RawMessage `json:"data"`
	}{From: "mallory", Data: fromClient}
	deep, err := json.Marshal(relayed)
	if err != nil || !proto.ValidJSON(deep) || len(deep) > proto.MaxDispatchArgs {
		t.Fatalf("test args: %v, valid %v, %d bytes", err, proto.ValidJSON(deep), len(deep))
	}

	for name, call := range map[string]func() error{
		"ToUsers": func() error { return d.ToUsers(ctx, []string{"bob"}, "relay", relayed) },
		"ToConns": func() error { return d.ToConns(ctx, []string{"c1"}, "relay", relayed) },
		"Dispatch": func() error {
			_, err := d.Dispatch(ctx, dispatch.Message{Event: "relay", Args: deep, Users: []string{"bob"}})
			return err
		},
	} {
		err := call()
		if w := event.WireError(err); w != nil && w.Code == proto.CodeBadRequest {
			continue // refused: fine
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		payload := receive(t, ps)
		if _, derr := proto.DecodeDispatchLazy([]byte(payload)); derr != nil {
			t.Errorf("%s: dispatched without error, and every gateway worker drops what it published as malformed: %v", name, derr)
		}
	}
}
