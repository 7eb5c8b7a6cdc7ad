package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestUnitFailsAlone: an error Redis raises while the publish script runs
// one unit of a call (WRONGTYPE on a meta or stream key something else
// overwrote) fails that unit only. The units after it, of every kind, find
// their keys and values where they are (a unit failing half way does not
// shift them) and run as if it had not been there; the reply keeps one
// position per target, "" for the failed units' but for the users a
// failed unit had recorded before it failed (carol, pa: they have the
// event, at that position), and says which units failed and whether they
// had written anything.
func TestUnitFailsAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := client(t)
	if err := rdb.Set(ctx, proto.UserMetaKey("badmeta"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, proto.UserStreamKey("badstream"), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// badstream's meta of this run, so that the script keeps its stream
	// key (no new epoch, no DEL) and XADD meets the string.
	publish(t, rdb, "carol") // records the run
	run := rdb.Get(ctx, proto.RunKey(proto.BroadcastPartition)).Val()
	if err := rdb.HSet(ctx, proto.UserMetaKey("badstream"), "e", "ep", "s", "1", "t", "1", "r", run, "x", "1").Err(); err != nil {
		t.Fatal(err)
	}
	channels := []string{proto.Channel}
	for _, u := range []string{"pa", "pb", "pc"} {
		channels = append(channels, proto.UserChannel(u))
	}
	ps := rdb.Subscribe(ctx, channels...)
	defer ps.Close()
	for range channels {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}

	args := json.RawMessage(`{}`)
	users := func(ev string, u ...string) *proto.Dispatch {
		return &proto.Dispatch{Event: ev, Args: args, Users: u}
	}
	units := []*streams.Unit{
		streams.NewUnit(users("u0", "alice"), true),
		streams.NewUnit(users("u1", "badmeta", "bob"), true),     // fails before it writes
		streams.NewUnit(users("u2", "carol", "badstream"), true), // fails after carol's XADD
		streams.NewUnit(users("u3", "dave"), false),              // transient
		streams.NewPerUserUnit(users("u4", "pa", "badmeta", "pb"), true),
		streams.NewPerUserUnit(users("u5", "pc"), false),
		streams.NewUnit(&proto.Dispatch{Event: "u6", Args: args, Broadcast: true}, true),
		streams.NewUnit(users("u7", "erin", "frank"), true),
	}
	keys, av := streams.PublishCall(units, time.Minute, streams.MetaTTL)
	res, err := streams.PublishScript.Run(ctx, rdb, keys, av...).StringSlice()
	if err != nil {
		t.Fatalf("the script failed as a whole: %v", err)
	}
	r, err := streams.ParseResult(res)
	if err != nil {
		t.Fatal(err)
	}
	// Targets: alice | badmeta bob | carol badstream | none | pa badmeta pb | none | broadcast | erin frank
	if len(r.Pos) != 11 {
		t.Fatalf("%d positions %q, want 11 (one per target)", len(r.Pos), r.Pos)
	}
	for i, want := range []bool{true, false, false, true, false, true, false, false, true, true, true} {
		if _, ok := proto.ParsePos(r.Pos[i]); ok != want || (!want && r.Pos[i] != "") {
			t.Errorf("position %d %q, want a position %v (else \"\")", i, r.Pos[i], want)
		}
	}
	var failed []string
	for _, f := range r.Failed {
		failed = append(failed, fmt.Sprintf("%d %v", f.Unit, f.Wrote))
		if !strings.HasPrefix(f.Err, "WRONGTYPE") {
			t.Errorf("unit %d: error %q, want Redis's WRONGTYPE", f.Unit, f.Err)
		}
	}
	if got := strings.Join(failed, ", "); got != "1 false, 2 true, 4 true" {
		t.Errorf("failed units %q, want 1 false, 2 true, 4 true", got)
	}

	// What ran is recorded where its own keys are.
	for user, want := range map[string]int64{"alice": 1, "bob": 0, "carol": 2, "pa": 1, "pb": 0, "erin": 1, "frank": 1, "dave": 0, "pc": 0} {
		if n := rdb.XLen(ctx, proto.UserStreamKey(user)).Val(); n != want {
			t.Errorf("%s's stream holds %d events, want %d", user, n, want)
		}
	}
	// A failed unit's recorded users' positions are their events'.
	for user, p := range map[string]string{"carol": r.Pos[3], "pa": r.Pos[5]} {
		last, err := rdb.XRevRangeN(ctx, proto.UserStreamKey(user), "+", "-", 1).Result()
		if err != nil || len(last) != 1 || !strings.HasSuffix(p, "."+last[0].ID) {
			t.Errorf("%s: position %q, its stream's last event %v (%v)", user, p, last, err)
		}
	}
	if n := rdb.XLen(ctx, proto.BroadcastStreamKey).Val(); n != 1 {
		t.Errorf("broadcast stream holds %d events, want 1", n)
	}
	// And published: every unit that ran, in order, with its own body.
	var got []string
	for range 5 {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var d proto.Dispatch
		if err := json.Unmarshal([]byte(msg.Payload), &d); err != nil {
			t.Fatalf("%s: %v", msg.Payload, err)
		}
		got = append(got, fmt.Sprintf("%s@%s%v", d.Event, msg.Channel, d.Users))
	}
	want := []string{"u0@" + proto.Channel + "[alice]", "u3@" + proto.Channel + "[dave]", "u4@" + proto.UserChannel("pa") + "[pa]",
		"u5@" + proto.UserChannel("pc") + "[pc]", "u6@" + proto.Channel + "[]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %q, want %q", got, want)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil || !strings.Contains(msg.Payload, `"u7"`) || !strings.Contains(msg.Payload, r.Pos[9]) || !strings.Contains(msg.Payload, r.Pos[10]) {
		t.Errorf("last message %v %v, want u7's with its positions %q", msg, err, r.Pos[9:])
	}

	// SplitResult, the simple form, fails with the first failed unit.
	_, _, err = streams.SplitResult(res)
	if ue, ok := errors.AsType[*streams.UnitError](err); !ok || ue.Unit != 1 || ue.Wrote {
		t.Errorf("SplitResult: %v, want unit 1's *UnitError", err)
	}
}

// TestParseResult: replies without failures read as they always did;
// failure elements come between the positions and the count.
func TestParseResult(t *testing.T) {
	r, err := streams.ParseResult([]string{"a.1-1", "", "!2w WRONGTYPE x y", "!3- ERR z", "4"})
	if err != nil {
		t.Fatal(err)
	}
	want := streams.PublishResult{Pos: []string{"a.1-1", ""}, Unheard: 4,
		Failed: []streams.UnitError{{Unit: 1, Wrote: true, Err: "WRONGTYPE x y"}, {Unit: 2, Err: "ERR z"}}}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Errorf("ParseResult = %+v, want %+v", r, want)
	}
	if r, err := streams.ParseResult([]string{"a.1-1", "0"}); err != nil || len(r.Pos) != 1 || r.Failed != nil {
		t.Errorf("ParseResult without failures = %+v, %v", r, err)
	}
	for _, bad := range [][]string{{"!x", "0"}, {"!1 e", "0"}, {"!0w e", "0"}, {"!w e", "0"}, {"!1w", "0"}, {"a.1-1", "-3"}} {
		if _, err := streams.ParseResult(bad); err == nil {
			t.Errorf("ParseResult(%q): no error", bad)
		}
	}
}

// TestClusterUnitFailsAlone: on a Redis Cluster, a partition's call
// (PartitionCall) fails only its unit that Redis failed, as on one Redis.
func TestClusterUnitFailsAlone(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect})
	ctx := context.Background()
	var users []string // three users of one partition
	for i := 0; len(users) < 3; i++ {
		if u := fmt.Sprintf("user-%d", i); proto.PartitionOf(u) == 0 {
			users = append(users, u)
		}
	}
	if err := rdb.Set(ctx, proto.UserMetaKey(users[1]), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var units []*streams.Unit
	for _, u := range users {
		units = append(units, streams.NewUnit(&proto.Dispatch{Event: "e", Args: json.RawMessage(`{}`), Users: []string{u}}, true))
	}
	keys, args := streams.PartitionCall(0, units, time.Minute, streams.MetaTTL)
	res, err := streams.PublishScript.Run(ctx, rdb, keys, args...).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	r, err := streams.ParseResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Pos) != 3 || r.Pos[0] == "" || r.Pos[1] != "" || r.Pos[2] == "" || len(r.Failed) != 1 || r.Failed[0].Unit != 1 || r.Failed[0].Wrote {
		t.Fatalf("reply %+v, want users 0 and 2 recorded, unit 1 failed before it wrote", r)
	}
	for i, want := range []int64{1, 0, 1} {
		if n := rdb.XLen(ctx, proto.UserStreamKey(users[i])).Val(); n != want {
			t.Errorf("%s's stream holds %d events, want %d", users[i], n, want)
		}
	}
	// Publish, the tools' form, fails with the unit's error.
	_, _, err = streams.Publish(ctx, rdb, time.Minute, &proto.Dispatch{Event: "e", Args: json.RawMessage(`{}`), Users: users})
	if ue, ok := errors.AsType[*streams.UnitError](err); !ok || ue.Wrote != true {
		t.Errorf("Publish: %v, want a *UnitError that wrote (users[0] before it)", err)
	}
}
