package worker

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/auth"
)

// TestFirstPairReadAsTheTokenIs: the token and the other parameters of
// the upgrade (heartbeat, prev, resume) are read by one rule (query.First),
// so the first pair of a name is the same pair for all of them. A review
// found auth skipping a pair whose ';' came before the name ("x;token=..",
// "token;x=..") and taking the token from the next pair, while the other
// parameters took such a pair for their first, undecodable.
func TestFirstPairReadAsTheTokenIs(t *testing.T) {
	pos := "k3x9.1700000000000-42"
	for _, shape := range []string{
		"x;%[1]s=%[2]s&%[1]s=%[3]s",   // the ';' in the name's part, before it
		"%[1]s;x=%[2]s&%[1]s=%[3]s",   // the name, then a ';'
		"a=1;%[1]s=%[2]s&%[1]s=%[3]s", // another pair, a ';', the name
	} {
		// The token: does the second pair stand in?
		r, _ := http.NewRequest(http.MethodGet, "/socket?"+fmt.Sprintf(shape, "token", "first", "second"), nil)
		tok, err := auth.FromRequest(r)
		tokenLater := err == nil && tok == "second"

		for _, p := range []struct {
			name          string
			first, second string
			later         func(params) bool // the second pair decided
		}{
			{"heartbeat", "0", "1", func(p params) bool { return p.heartbeat }},
			{"prev", "c1", "c2", func(p params) bool { return len(p.prev) == 1 && p.prev[0] == "c2" }},
			{"resume", "x", pos, func(p params) bool { return p.resume == pos }},
		} {
			q := fmt.Sprintf(shape, p.name, p.first, p.second)
			if later := p.later(socketParams(q)); later != tokenLater {
				t.Errorf("query %q: %s from its second pair %v, but for %q the token from its second pair %v (token %q, err %v): the first pair of a name is not the same pair for both",
					q, p.name, later, r.URL.RawQuery, tokenLater, tok, err)
			}
		}
	}
}
