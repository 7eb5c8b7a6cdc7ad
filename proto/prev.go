package proto

import "strings"

// QueryPrev is the query parameter of the upgrade request with which a
// resuming client names the connections it had before in its session
// (docs/protocol.md section 6, an extension): prev=<conn>,<conn>, the
// connected.args.conn of each, at most MaxPrev. An event whose dispatch
// left one of them out (Dispatch.Except) is not replayed to it.
const QueryPrev = "prev"

// MaxPrev is the most connection ids a prev parameter names; MaxPrevConn
// the most bytes of each (the gateway's ids are under 30).
const (
	MaxPrev     = 8
	MaxPrevConn = 64
)

// ParsePrev returns the connection ids of a prev parameter's value, or nil
// when it is malformed: more than MaxPrev ids, or one that is empty,
// longer than MaxPrevConn bytes, or not printable ASCII. A malformed one
// is ignored, never an error: the client then gets the events it was left
// out of, as it would without the parameter.
func ParsePrev(v string) []string {
	if v == "" || len(v) > MaxPrev*(MaxPrevConn+1) {
		return nil
	}
	ids := strings.Split(v, ",")
	if len(ids) > MaxPrev {
		return nil
	}
	for _, id := range ids {
		if id == "" || len(id) > MaxPrevConn {
			return nil
		}
		for i := 0; i < len(id); i++ {
			if id[i] <= ' ' || id[i] > '~' {
				return nil
			}
		}
	}
	return ids
}
