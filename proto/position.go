package proto

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Positions (docs/protocol.md section 6). Every recoverable event is an entry of a
// stream: one stream per user, and one for broadcasts. A position names a
// stream's epoch and one entry of it, and is written "<epoch>.<ms>-<off>":
//
//   - off is the entry's offset, counted 1, 2, 3, ... without gaps within an
//     epoch, so a skipped event is visible;
//   - ms is the entry's time in Unix milliseconds, never smaller than the
//     previous entry's, so "<ms>-<off>" is also the entry's Redis Stream ID
//     and the stream can be trimmed by time;
//   - epoch changes whenever the store may have lost data, so a position of
//     an earlier epoch can never be taken for one of the current.
//
// To clients a position is an opaque string of at most MaxPosLen bytes.

// MaxPosLen is the longest position string a client may send back.
const MaxPosLen = 128

// MaxEpochLen is the longest epoch.
const MaxEpochLen = 32

// Pos is a decoded position.
type Pos struct {
	Epoch string
	MS    uint64 // entry time, Unix milliseconds
	Off   uint64 // entry offset; 0 = before the first entry
}

// String returns the wire form of p.
func (p Pos) String() string { return string(p.Append(nil)) }

// Append appends the wire form of p to dst.
func (p Pos) Append(dst []byte) []byte {
	dst = append(dst, p.Epoch...)
	dst = append(dst, '.')
	return p.AppendID(dst)
}

// ID returns the Redis Stream ID of p's entry, "<ms>-<off>".
func (p Pos) ID() string { return string(p.AppendID(nil)) }

// AppendID appends p's stream ID to dst.
func (p Pos) AppendID(dst []byte) []byte {
	dst = strconv.AppendUint(dst, p.MS, 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, p.Off, 10)
}

// ParsePos decodes a position; ok is false for anything that is not one
// (empty, too long, a bad epoch or ID). It never panics: its input comes
// from clients.
func ParsePos(s string) (p Pos, ok bool) {
	if len(s) == 0 || len(s) > MaxPosLen {
		return Pos{}, false
	}
	epoch, id, found := strings.Cut(s, ".")
	if !found || !ValidEpoch(epoch) {
		return Pos{}, false
	}
	ms, off, ok := ParseStreamID(id)
	if !ok {
		return Pos{}, false
	}
	return Pos{Epoch: epoch, MS: ms, Off: off}, true
}

// ValidPos reports whether ParsePos would decode s, without decoding it:
// a worker checks the position of every target of a dispatch and decodes
// only those of the users it holds.
func ValidPos(s string) bool {
	if len(s) == 0 || len(s) > MaxPosLen {
		return false
	}
	epoch, id, found := strings.Cut(s, ".")
	if !found || !ValidEpoch(epoch) {
		return false
	}
	ms, seq, found := strings.Cut(id, "-")
	return found && validDecimal(ms) && validDecimal(seq)
}

// maxUint64 is the largest canonical decimal parseDecimal takes.
const maxUint64 = "18446744073709551615"

// validDecimal reports whether parseDecimal would take s.
func validDecimal(s string) bool {
	if len(s) == 0 || len(s) > len(maxUint64) || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	// Digits of one length compare as their numbers do.
	return len(s) < len(maxUint64) || s <= maxUint64
}

// ParseStreamID decodes a Redis Stream ID "<ms>-<seq>" of decimal numbers
// without signs or leading zeros (except "0" itself).
func ParseStreamID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	if ms, ok = parseDecimal(a); !ok {
		return 0, 0, false
	}
	if seq, ok = parseDecimal(b); !ok {
		return 0, 0, false
	}
	return ms, seq, true
}

// parseDecimal parses a canonical unsigned decimal: digits only, no
// leading zero unless the number is 0, and no overflow.
func parseDecimal(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// ValidEpoch reports whether s can be an epoch: 1 to MaxEpochLen
// characters of [0-9a-z].
func ValidEpoch(s string) bool {
	if len(s) == 0 || len(s) > MaxEpochLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// Recovery settings both services read (docs/protocol.md section 1).
const (
	// DefaultHistoryWindow is how long events are kept for recovery
	// (HISTORY_WINDOW) when not set.
	DefaultHistoryWindow = 120 * time.Second
	// MaxHistoryWindow bounds HISTORY_WINDOW: a stream's epoch and top
	// offset are kept a day after their last use, so a longer window could
	// outlive them.
	MaxHistoryWindow = 24 * time.Hour
)

// CheckHistoryWindow returns why d cannot be a HISTORY_WINDOW, or nil: it
// is 0 (recovery off) or from a second to MaxHistoryWindow.
func CheckHistoryWindow(d time.Duration) error {
	if d == 0 || (d >= time.Second && d <= MaxHistoryWindow) {
		return nil
	}
	return fmt.Errorf("must be 0 (recovery off) or from 1s to %s, got %s", MaxHistoryWindow, d)
}
