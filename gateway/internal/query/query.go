// Package query reads a parameter of an upgrade request's query the one
// way every part of the gateway reads it (the token, resume, bresume,
// heartbeat, prev): the first pair of the name decides, and a later pair
// never stands in for one that does not decode.
package query

import (
	"net/url"
	"strings"
)

// First returns the value of the first pair of rawQuery named name. Pairs
// are split on '&', each into a name and a value at its first '='; the
// name is %-decoded, and one that does not decode or holds a ';' (which
// net/url refuses) names no parameter. found reports that a pair is named
// name; ok is false when its value does not decode: a bad %-escape, or a
// ';', which net/url refuses too.
func First(rawQuery, name string) (value string, found, ok bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if strings.Contains(k, ";") {
			continue
		}
		if key, err := url.QueryUnescape(k); err != nil || key != name {
			continue
		}
		if strings.Contains(v, ";") {
			return "", true, false
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return "", true, false
		}
		return value, true, true
	}
	return "", false, true
}
