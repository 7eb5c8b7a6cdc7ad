package proto

import (
	"unicode"
	"unicode/utf8"
)

// MaxUserLen is the longest user id, in bytes (docs/protocol.md section 2:
// a token's sub): a user id is a key in every index and log line of the
// gateway, and part of its Redis keys and channels.
const MaxUserLen = 256

// ValidUser reports whether user is a user id the contract allows: 1 to
// MaxUserLen bytes of valid UTF-8, every character printable (letters,
// marks, numbers, punctuation, symbols and the ASCII space; no control,
// format or bidirectional-override characters, which would let a user id
// forge or hide text in logs and in other users' screens). The gateway
// takes no other from a token, and handlers-svc dispatches to no other:
// no socket can ever be of one.
func ValidUser(user string) bool {
	if user == "" || len(user) > MaxUserLen || !utf8.ValidString(user) {
		return false
	}
	for _, r := range user {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
