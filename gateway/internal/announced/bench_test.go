package announced

import (
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkRecordBatch is what the records cost per socket (its connect,
// later its disconnect), written in batches of 256 as the publisher
// writes them and read into a Set, each batch written once the pipe has
// taken the last: 0.34 to 0.43 µs a socket on a 2-core box, 48 B and 3
// allocations (the set's strings), both processes' work together.
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
	flush := func() {
		// Until the pipe took it all: the pace the reader keeps.
		for _ = rec.Flush(); rec.Pending(); _ = rec.Flush() {
			runtime.Gosched()
		}
	}
	for i := 0; i < b.N; i += len(conns) {
		for _, c := range conns {
			rec.Connect(c, "user-1234567")
		}
		flush()
		for _, c := range conns {
			rec.Disconnect(c)
		}
		flush()
	}
	_ = rec.Close()
	<-done
}
