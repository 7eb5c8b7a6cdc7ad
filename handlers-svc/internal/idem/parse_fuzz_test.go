package idem

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParse: a record read back from Redis may be anything (another
// version's, or a key written by something else). parse never panics; it
// replays an answer only from a record answered for the same request,
// and tells apart a key of another request; and every record the Store
// writes reads back as what it means: an answer as itself, a record given
// up as ErrUnknown, a reservation as ErrPending until its deadline and
// SettleGrace have passed by now, then as ErrUnknown.
func FuzzParse(f *testing.F) {
	h := strings.Repeat("5e", 32) // a sha256 in hex, as both callers name requests
	for _, s := range []struct {
		v, hash string
		answer  []byte
		token   []byte
		ms, now int64
	}{
		{"d:" + h + ":" + `{"users":{"bob":"k3x9q2.1-0"}}` + "\n", h, []byte(`{"users":{}}`), []byte("0123456789abcdef"), 0, 1700000000000},
		{"p:" + h + ":00112233445566778899aabbccddeeff.1700000000000", h, nil, []byte("0123456789abcdef"), 1700000000000, 1700000005001},
		{"p:" + h + ":00112233445566778899aabbccddeeff.0", h, []byte("{}"), nil, 0, 1},
		{"u:" + h + ":", h, []byte(`{"result":1}`), nil, -1, 0},
		{"d:" + h + "x:{}", h, nil, nil, 1, 0},
		{"d:" + h, h, nil, nil, 9223372036854775807, 9223372036854775807},
		{"p:" + h + ":t.-5", h, nil, nil, 1700000000000, 1700000004999},
		{"d:", "h", nil, nil, 0, 0},
		{"", "h", nil, nil, 0, 0},
		{"x", "x", nil, nil, 0, 0},
		{"zz" + h + ":tok.1", h, nil, nil, 1, 6000},
	} {
		f.Add(s.v, s.hash, s.answer, s.token, s.ms, s.now)
	}
	f.Fuzz(func(t *testing.T, v, hash string, answer, token []byte, ms, nowMS int64) {
		if hash == "" || strings.Contains(hash, ":") {
			return // Reserve's callers name a request by a hash without ':'
		}
		now := time.UnixMilli(nowMS)

		// Any record.
		got, err := parse(v, hash, now)
		rest := v[min(len(v), 2):]
		other := rest != hash && !strings.HasPrefix(rest, hash+":")
		if errors.Is(err, ErrOther) != other {
			t.Fatalf("parse(%q, %q): %v; a record of another request: %v", v, hash, err, other)
		}
		if err == nil {
			// An answer: the record is that answer, recorded for hash,
			// never an empty one (a reply never is: "d:<hash>" alone or
			// with an empty answer reads as an unknown outcome).
			if v != stateDone+hash+":"+string(got) || len(got) == 0 {
				t.Fatalf("parse(%q, %q) replays %q", v, hash, got)
			}
		} else if got != nil {
			t.Fatalf("parse(%q, %q): %v with an answer %q", v, hash, err, got)
		}
		if err != nil && !errors.Is(err, ErrOther) && !errors.Is(err, ErrPending) {
			t.Fatalf("parse(%q, %q): %v, none of its errors", v, hash, err)
		}

		// The records the Store writes (Record, Abandon, Reserve).
		if got, err := parse(stateDone+hash+":"+string(answer), hash, now); len(answer) > 0 && (err != nil || !bytes.Equal(got, answer)) {
			t.Fatalf("answer %q reads back as %q, %v", answer, got, err)
		}
		if got, err := parse(stateUnknown+hash+":", hash, now); got != nil || err != ErrUnknown {
			t.Fatalf("a record given up reads as %q, %v", got, err)
		}
		pending := statePending + hash + ":" + hex.EncodeToString(token) + "." + strconv.FormatInt(ms, 10)
		// Its holder went away once its deadline (0: none) and the grace
		// after it are past; the subtraction cannot overflow with ms > 0.
		gone := ms > 0 && nowMS > ms && nowMS-ms > SettleGrace.Milliseconds()
		want := ErrPending
		if gone {
			want = ErrUnknown
		}
		if got, err := parse(pending, hash, now); got != nil || err != want {
			t.Fatalf("reservation %q at %d reads as %q, %v; want %v", pending, nowMS, got, err, want)
		}
		for _, state := range []string{stateDone, stateUnknown, statePending} {
			foreign := state + hash + "x:" + string(answer)
			if got, err := parse(foreign, hash, now); got != nil || err != ErrOther {
				t.Fatalf("another request's record %q reads as %q, %v", foreign, got, err)
			}
		}
	})
}
