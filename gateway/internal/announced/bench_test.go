package announced

import (
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// BenchmarkRecordBatch is what the records cost per socket (its connect,
// later its disconnect), written in batches of 256 as the publisher
// writes them and read into a Set, the two ends as fast as they go: the
// reader is the slower (about 1 µs a socket on a 2-core box, 91 B and 3
// allocations: the set's strings); a worker's churn is far below that.
func BenchmarkRecordBatch(b *testing.B) {
	rec, r := pipe(b, 1<<30) // never dropping: every record is read
	s := NewSet(1 << 22)
	done := make(chan struct{})
	go func() { defer close(done); Read(r, s) }()
	conns := make([]string, 256)
	for i := range conns {
		conns[i] = "k3vq8zt1a0bq2-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(conns) {
		for _, c := range conns {
			rec.Connect(c, "user-1234567")
		}
		_ = rec.Flush()
		for _, c := range conns {
			rec.Disconnect(c)
		}
		_ = rec.Flush()
	}
	testkit.Eventually(b, 10*time.Second, "the reader took every record", func() bool {
		_ = rec.Flush()
		return !rec.Pending()
	})
	_ = rec.Close()
	<-done
}
