package main

import "testing"

func TestAutoProcsKeepsEachProcessUnderItsFileLimit(t *testing.T) {
	for _, c := range []struct {
		conns int
		limit uint64
		want  int
	}{
		{100000, 20000, 6}, // 18,976 sockets per process at most
		{10000, 20000, 1},
		{18976, 20000, 1},
		{18977, 20000, 2},
		{100, 1000, 100}, // a tiny limit still gives one socket each
	} {
		if got := autoProcs(c.conns, c.limit); got != c.want {
			t.Errorf("autoProcs(%d, %d) = %d, want %d", c.conns, c.limit, got, c.want)
		}
	}
}
