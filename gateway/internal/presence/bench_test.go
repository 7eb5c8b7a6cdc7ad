package presence

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

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

// BenchmarkOpenedClosed: a socket's lease written and removed, in the
// batches a connect or disconnect storm makes (batchCmds/2 to a round
// trip), both scripts counting the user's sockets. One op is one socket.
func BenchmarkOpenedClosed(b *testing.B) {
	r := testkit.StartRedis(b)
	l := New(client(b, r), 30*time.Second, &counter{}, zap.NewNop())
	const batch = batchCmds / 2
	users, conns := benchSockets(batch)
	counts := make([]*Count, batch)
	b.ReportAllocs()
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
}

// BenchmarkRefresh: a refresh pass over users with a socket each, every
// TTL/3 on every worker. It reports its time and garbage per user.
func BenchmarkRefresh(b *testing.B) {
	for _, users := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			r := testkit.StartRedis(b)
			l := New(client(b, r), 30*time.Second, &counter{}, zap.NewNop())
			names, conns := benchSockets(users)
			for i := range users {
				l.Opened(names[i], conns[i])
			}
			l.flush()
			ctx := context.Background()
			l.refresh(ctx) // the first pass grows what later ones reuse
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for range b.N {
				l.refresh(ctx)
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			per := float64(b.N) * float64(users)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/user")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/user")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/user")
		})
	}
}
