package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// sendMessageArgs are the args of a typical sendMessage dispatch, ~330
// bytes.
var sendMessageArgs = json.RawMessage(`{"from":"u42","to":"u43","text":"` + strings.Repeat("x", 200) + `","ts":1764072000124,"msg_id":"0123456789abcdef0123456789abcdef"}`)

// BenchmarkPublish is the Redis side of one recorded dispatch to one user:
// the publish script's round trip (no subscribers), with sendMessage's
// payload. redis-µs/op is the script's time in Redis per call, from INFO
// commandstats: Redis's own CPU, which the round trip hides.
func BenchmarkPublish(b *testing.B) {
	rdb := client(b)
	ctx := context.Background()
	args := sendMessageArgs
	i := 0
	before := scriptUsec(b, rdb)
	for b.Loop() {
		d := &proto.Dispatch{Event: "message", Args: args, Users: []string{"u" + strconv.Itoa(i%1000)}}
		if _, _, err := streams.Publish(ctx, rdb, 2*time.Minute, d); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(scriptUsec(b, rdb)-before)/float64(i), "redis-µs/op")
}

// scriptUsec returns the microseconds Redis has spent in scripts (EVAL,
// EVALSHA), from INFO commandstats.
func scriptUsec(tb testing.TB, rdb *redis.Client) int64 {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var usec int64
	for line := range strings.Lines(info) {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_eval" && name != "cmdstat_evalsha") {
			continue
		}
		for f := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					tb.Fatal(err)
				}
				usec += n
			}
		}
	}
	return usec
}

// BenchmarkStreamMemory measures what the streams cost in Redis memory per
// user (used_memory before and after, over 1,000 users): a user with no
// event in the window (its meta only, as for every connected user), and
// users with 10 and 100 events of sendMessage's size (~330 bytes of args)
// in the window. The figure is reported as B/user; b.N does not matter.
func BenchmarkStreamMemory(b *testing.B) {
	const users = 1000
	args := sendMessageArgs
	for _, events := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
			rdb := client(b)
			ctx := context.Background()
			before := usedMemory(b, rdb)
			for u := range users {
				user := "user-" + strconv.Itoa(u)
				if events == 0 {
					if _, err := streams.Read(ctx, rdb, []streams.Query{{Stream: streams.UserStream, User: user, Max: 1}}); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for range events {
					if _, _, err := streams.Publish(ctx, rdb, 2*time.Minute, &proto.Dispatch{Event: "message", Args: args, Users: []string{user}}); err != nil {
						b.Fatal(err)
					}
				}
			}
			per := float64(usedMemory(b, rdb)-before) / users
			for b.Loop() {
			}
			b.ReportMetric(per, "B/user")
		})
	}
}

// usedMemory returns Redis's used_memory.
func usedMemory(tb testing.TB, rdb *redis.Client) int64 {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("no used_memory in INFO memory")
	return 0
}
