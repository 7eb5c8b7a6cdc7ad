package admission

import (
	"net/http"
	"net/url"
	"strings"
)

// checkOrigin applies GATEWAY_ALLOWED_ORIGINS (docs/protocol.md section 1).
func (a *Admission) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(a.cfg.AllowedOrigins) == 0 {
		if a.cfg.Dev {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, o := range a.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}
