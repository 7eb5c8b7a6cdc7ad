package proto

import (
	"testing"
	"time"
)

func TestDeadlineRoundTrip(t *testing.T) {
	now := time.Now()
	got, ok := ParseDeadline(FormatDeadline(now))
	if !ok || !got.Equal(now.Truncate(time.Millisecond)) {
		t.Fatalf("ParseDeadline(FormatDeadline(%v)) = %v, %v", now, got, ok)
	}
	for _, bad := range []string{"", "soon", "-5", "0", "1.5", "99999999999999999999"} {
		if _, ok := ParseDeadline(bad); ok {
			t.Errorf("ParseDeadline(%q) accepted it", bad)
		}
	}
}
