package presence

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/testkit"
)

// The benchmarks write to a real redis-server and play Run's goroutine
// themselves (no Run): they call flush and refresh as it does, so what
// they measure is the writes, not the scheduling. Repeat with
//
//	cd gateway && go test -run '^$' -bench . -benchmem ./internal/presence

// benchSockets returns n users and a 15-byte connection id for each, as
// the gateway's ids are.
func benchSockets(n int) (users, conns []string) {
	users, conns = make([]string, n), make([]string, n)
	for i := range n {
		users[i] = fmt.Sprintf("user-%d", i)
		conns[i] = fmt.Sprintf("c%014d", i)
	}
	return users, conns
}

// redisCPU returns the CPU time redis-server has used, user and system.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		name, v, _ := strings.Cut(line, ":")
		if name == "used_cpu_user" || name == "used_cpu_sys" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("%s: %v", line, err)
			}
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// BenchmarkOpenedClosed: a socket's lease written and removed, in the
// batches a connect or disconnect storm makes (batchCmds/2 to a round
// trip), both scripts counting the user's sockets. One op is one socket;
// redis-ns/op is Redis's CPU time for it.
func BenchmarkOpenedClosed(b *testing.B) {
	r := testkit.StartRedis(b)
	rdb := client(b, r)
	l := New(rdb, 30*time.Second, &counter{}, zap.NewNop())
	const batch = batchCmds / 2
	users, conns := benchSockets(batch)
	counts := make([]*Count, batch)
	b.ReportAllocs()
	cpu := redisCPU(b, rdb)
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		for i := range n {
			l.Opened(users[i], conns[i])
		}
		l.flush()
		for i := range n {
			counts[i] = l.closing(users[i], conns[i])
		}
		l.flush()
		for i := range n {
			if s, ok := counts[i].Sockets(); !ok || s != 0 {
				b.Fatalf("%s's sockets after the close: %d, %t; want 0", users[i], s, ok)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((redisCPU(b, rdb)-cpu).Nanoseconds())/float64(b.N), "redis-ns/op")
}

// BenchmarkRefresh: a refresh pass over users with a socket each, every
// TTL/3 on every worker. It reports its time, its garbage and Redis's CPU
// time per user.
func BenchmarkRefresh(b *testing.B) {
	for _, users := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			r := testkit.StartRedis(b)
			rdb := client(b, r)
			l := New(rdb, 30*time.Second, &counter{}, zap.NewNop())
			names, conns := benchSockets(users)
			for i := range users {
				l.Opened(names[i], conns[i])
			}
			l.flush()
			ctx := context.Background()
			l.refresh(ctx) // the first pass grows what later ones reuse
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			cpu := redisCPU(b, rdb)
			b.ResetTimer()
			for range b.N {
				l.refresh(ctx)
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64((redisCPU(b, rdb)-cpu).Nanoseconds())/float64(b.N)/float64(users), "redis-ns/user")
			per := float64(b.N) * float64(users)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/user")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/user")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/user")
		})
	}
}
