package revoke

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRevokedIAT: the edges of the comparison of iat (seconds) with the
// moment (ms): a token of the revoke's second is refused, one of the next
// second accepted, one with no iat refused; other users are unaffected.
func TestRevokedIAT(t *testing.T) {
	l := New(nil, time.Hour, zap.NewNop())
	at := time.Now()
	before := at.Truncate(time.Second).UnixMilli() + 400 // 400ms into its second
	l.Revoke([]string{"alice"}, before, false)
	sec := time.UnixMilli(before).Truncate(time.Second)
	for _, c := range []struct {
		name string
		iat  time.Time
		want bool
	}{
		{"no iat", time.Time{}, true},
		{"a second before", sec.Add(-time.Second), true},
		{"same second", sec, true},
		{"same second, later ms (iat has none)", sec.Add(900 * time.Millisecond), true},
		{"next second", sec.Add(time.Second), false},
	} {
		if got := l.Revoked("alice", c.iat); got != c.want {
			t.Errorf("%s: Revoked = %v, want %v", c.name, got, c.want)
		}
	}
	if l.Revoked("bob", time.Time{}) {
		t.Error("bob, never revoked, is")
	}
	// A later revoke moves the moment; an earlier one does not.
	l.Revoke([]string{"alice"}, before+5000, false)
	l.Revoke([]string{"alice"}, before-5000, false)
	if !l.Revoked("alice", sec.Add(5*time.Second)) {
		t.Error("the later revoke was not kept")
	}
}

// TestRevokedPastTTL: an entry older than the TTL no longer refuses, and
// the next revoke prunes it.
func TestRevokedPastTTL(t *testing.T) {
	now := time.Now()
	l := New(nil, time.Hour, zap.NewNop())
	l.now = func() time.Time { return now }
	l.Revoke([]string{"old"}, now.Add(-2*time.Hour).UnixMilli(), false)
	l.Revoke([]string{"young"}, now.Add(-59*time.Minute).UnixMilli(), false)
	if l.Revoked("old", time.Time{}) {
		t.Error("an entry past the TTL refuses")
	}
	if !l.Revoked("young", time.Time{}) {
		t.Error("an entry within the TTL does not refuse")
	}
	if l.Len() != 1 {
		t.Errorf("Len = %d after a prune, want 1 (young)", l.Len())
	}
	now = now.Add(2 * time.Minute) // young is past the TTL now
	if l.Revoked("young", time.Time{}) {
		t.Error("young refuses past the TTL")
	}
	l.Revoke([]string{"new"}, now.UnixMilli(), false)
	if l.Len() != 1 {
		t.Errorf("Len = %d, want 1 (new)", l.Len())
	}
}

// TestLoad: Load reads the hash from a real Redis and merges it
// with what it holds (a later moment wins, nothing is dropped but by the
// TTL) and skips fields that are no number.
func TestLoad(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	now := time.Now().UnixMilli()
	if err := rdb.HSet(ctx, proto.RevokedKey, "alice", now, "carol", now-1000, "junk", "x", "stale", now-2*3600*1000).Err(); err != nil {
		t.Fatal(err)
	}
	l := New(rdb, time.Hour, zap.NewNop())
	var missed [][]string
	l.OnMissed(func(users []string) { missed = append(missed, slices.Sorted(slices.Values(users))) })
	l.Revoke([]string{"carol"}, now+60*1000, false) // received from a message, later than the hash
	l.Revoke([]string{"bob"}, now, false)           // received while the load was under way
	if l.Loaded() {
		t.Fatal("Loaded before any load")
	}
	l.RequestLoad()
	l.RequestLoad() // coalesced with the first: never blocks
	if err := l.Load(ctx); err != nil || !l.Loaded() {
		t.Fatalf("Load = %v, Loaded %v", err, l.Loaded())
	}
	if !l.Revoked("alice", time.UnixMilli(now-1000)) || !l.Revoked("bob", time.Time{}) {
		t.Error("alice (from the hash) or bob (held) not revoked")
	}
	if !l.Revoked("carol", time.UnixMilli(now+30*1000)) {
		t.Error("carol's later moment was replaced by the hash's earlier one")
	}
	if l.Revoked("stale", time.Time{}) || l.Revoked("junk", time.Time{}) {
		t.Error("a stale or non-numeric field refuses")
	}
	if l.Len() != 3 {
		t.Errorf("Len = %d, want 3 (alice, bob, carol)", l.Len())
	}
	// Only alice's revoke was news: no message told of it.
	if len(missed) != 1 || !slices.Equal(missed[0], []string{"alice"}) {
		t.Errorf("OnMissed got %q, want [[alice]] once", missed)
	}
	if err := l.Load(ctx); err != nil || len(missed) != 1 {
		t.Errorf("a second load of the same hash: %v, OnMissed calls %q", err, missed)
	}
}

// TestRunRetriesWithBackoff: a load that fails (here HGETALL on a key
// that is no hash: WRONGTYPE, from a real Redis) is retried, each wait
// twice the one before from 50ms, the list stays unloaded meanwhile, and
// the first load Redis answers is merged and ends the retries.
func TestRunRetriesWithBackoff(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	if err := rdb.Set(ctx, proto.RevokedKey, "no hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	l := New(rdb, time.Hour, zap.New(core))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	failed := func() []observer.LoggedEntry {
		return logs.FilterMessage("loading the revoked tokens failed; retrying").All()
	}
	l.RequestLoad()
	testkit.Eventually(t, 10*time.Second, "four failed loads", func() bool { return len(failed()) >= 4 })
	if l.Loaded() {
		t.Fatal("Loaded after failed loads only")
	}
	// Each failure is logged, then waited for: the gap between two logs
	// is at least the wait, 50ms, 100ms, 200ms. Without back-off, or with
	// a constant one, the later gaps are shorter.
	f := failed()
	for i, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		if gap := f[i+1].Time.Sub(f[i].Time); gap < want {
			t.Errorf("retry %d came %s after the failure before it, want at least %s", i+1, gap, want)
		}
	}

	// Redis answers: the key is a hash now.
	now := time.Now().UnixMilli()
	if err := rdb.Del(ctx, proto.RevokedKey).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, proto.RevokedKey, "alice", now).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a load succeeds", l.Loaded)
	if !l.Revoked("alice", time.Time{}) {
		t.Error("alice, in the hash the retry read, is not revoked")
	}
	// The retries ended with the success: a later load asked for succeeds
	// at once, with no failure logged since.
	n := len(failed())
	if err := rdb.HSet(ctx, proto.RevokedKey, "bob", now).Err(); err != nil {
		t.Fatal(err)
	}
	l.RequestLoad()
	testkit.Eventually(t, 10*time.Second, "bob is loaded", func() bool { return l.Revoked("bob", time.Time{}) })
	if got := len(failed()); got != n {
		t.Errorf("%d failures logged after the successful load, want none", got-n)
	}
}

// TestReconnect: Reconnect says whether the latest revoke of a user, as
// received by message, asked its clients to reconnect; a later revoke
// that did not ask ends it, an earlier one changes nothing.
func TestReconnect(t *testing.T) {
	l := New(nil, time.Hour, zap.NewNop())
	now := time.Now().UnixMilli()
	if l.Reconnect("alice") {
		t.Fatal("Reconnect of a user never revoked")
	}
	l.Revoke([]string{"alice"}, now, true)
	l.Revoke([]string{"alice"}, now-1000, false) // older: kept out
	if !l.Reconnect("alice") {
		t.Fatal("the latest revoke asked to reconnect, Reconnect = false")
	}
	l.Revoke([]string{"alice"}, now+1000, false)
	if l.Reconnect("alice") {
		t.Fatal("a later revoke without reconnect, Reconnect = true")
	}
}
