// Package readiness is the answer to GET /readyz, one shape in every
// switchboard process, and its writer. The body is
//
//	{"status":"ready","reasons":[]}
//	{"status":"unavailable","reasons":["nats not connected","redis not answering"]}
//
// with HTTP 200 when ready and 503 when not; reasons is always a list,
// empty when ready, and names everything that is not. Processes add their
// own fields: a gateway worker its index ("worker":0), the gateway
// supervisor the body of each worker's /readyz ("workers":[...]), while
// its own reasons name the workers that are not ready.
package readiness

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// The values of Body.Status.
const (
	StatusReady       = "ready"
	StatusUnavailable = "unavailable"
)

// maxBody bounds what Decode reads.
const maxBody = 1 << 16

// Body is the JSON body of GET /readyz.
type Body struct {
	Status  string   `json:"status"`  // StatusReady or StatusUnavailable
	Reasons []string `json:"reasons"` // why not ready; empty when ready
	// Worker is the index of the gateway worker that answered, set by
	// gateway workers only.
	Worker *int `json:"worker,omitempty"`
	// Workers is each worker's body, in index order, set by the gateway
	// supervisor only.
	Workers []Body `json:"workers,omitempty"`
}

// New returns the body for reasons: ready when there are none.
func New(reasons ...string) Body {
	if len(reasons) == 0 {
		return Body{Status: StatusReady, Reasons: []string{}}
	}
	return Body{Status: StatusUnavailable, Reasons: reasons}
}

// OfWorker returns b naming gateway worker index as the one answering.
func (b Body) OfWorker(index int) Body {
	b.Worker = &index
	return b
}

// Ready reports whether b says ready.
func (b Body) Ready() bool { return b.Status == StatusReady }

// Code returns the HTTP status b is answered with: 200 when ready, else
// 503.
func (b Body) Code() int {
	if b.Ready() {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

// Write answers a request with b: JSON, never cached, status b.Code().
func Write(w http.ResponseWriter, b Body) {
	if b.Reasons == nil {
		b.Reasons = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(b.Code())
	_ = json.NewEncoder(w).Encode(b)
}

// Read returns the body of a /readyz answer, trusting its HTTP status over
// its text: an answer other than 200 is not ready, whatever it says, and
// one that does not decode is not either.
func Read(resp *http.Response) Body {
	var b Body
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&b); err != nil {
		b = Body{Reasons: []string{fmt.Sprintf("unreadable answer: HTTP %d", resp.StatusCode)}}
	}
	if b.Reasons == nil {
		b.Reasons = []string{}
	}
	if resp.StatusCode != http.StatusOK || b.Status != StatusReady || len(b.Reasons) > 0 {
		b.Status = StatusUnavailable
		if len(b.Reasons) == 0 {
			b.Reasons = []string{fmt.Sprintf("HTTP %d", resp.StatusCode)}
		}
	}
	return b
}
