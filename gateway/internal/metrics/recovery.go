package metrics

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of a resume, the values of the outcome label of
// switchboard_gateway_resumes_total (resume.Outcome*).
var resumeOutcomes = [...]string{"recovered", "store_lost", "expired", "too_many", "invalid_position", "recovery_off"}

// Reasons of a resync frame, the values of the reason label of
// switchboard_gateway_resyncs_total (resume.Reason*).
var resyncReasons = [...]string{"store lost events", "missed events expired", "too many missed events"}

// recovery are the instruments of docs/protocol.md section 6.
type recovery struct {
	resumes          map[string]prometheus.Counter
	replayed         prometheus.Counter
	healed           prometheus.Counter
	healedEvents     prometheus.Counter
	resyncs          map[string]prometheus.Counter
	duplicates       prometheus.Counter
	transientDropped prometheus.Counter
}

func newRecovery(f factory) recovery {
	r := recovery{
		resumes: make(map[string]prometheus.Counter, len(resumeOutcomes)),
		resyncs: make(map[string]prometheus.Counter, len(resyncReasons)),
	}
	resumes := f.counterVec("resumes_total",
		"Sockets that connected with a resume position, by outcome: recovered (every missed event replayed) or why not (store_lost, expired, too_many, invalid_position, recovery_off).",
		"outcome")
	for _, o := range resumeOutcomes {
		r.resumes[o] = resumes.WithLabelValues(o)
	}
	r.replayed = f.counter("events_replayed_total", "Missed events replayed to sockets that resumed, counted as each is queued to its socket: a replay cut short (a resync, a close) counts what it sent.")
	r.healed = f.counter("gaps_healed_total", "Gaps on live sockets filled from the streams without closing them.")
	r.healedEvents = f.counter("gap_events_filled_total", "Events sent to live sockets to fill gaps.")
	resyncs := f.counterVec("resyncs_total", "Resync frames sent: gaps on live sockets that could not be filled, by reason.", "reason")
	for _, reason := range resyncReasons {
		r.resyncs[reason] = resyncs.WithLabelValues(reason)
	}
	r.duplicates = f.counter("duplicates_dropped_total", "Events not sent because the socket already had them (offset not ahead of its position).")
	r.transientDropped = f.counter("transient_dropped_total", "Transient events (to connections, or with recovery off) dropped because a socket held more frames than it may while it read a stream.")
	return r
}

// Resumed counts a socket that connected with a resume position.
func (m *Worker) Resumed(outcome string) {
	if c, ok := m.rec.resumes[outcome]; ok {
		c.Inc()
	}
}

// Replayed counts events of a resume's replay queued to a socket.
func (m *Worker) Replayed(events int) { m.rec.replayed.Add(float64(events)) }

// Healed counts a gap filled on a live socket with events events.
func (m *Worker) Healed(events int) {
	m.rec.healed.Inc()
	m.rec.healedEvents.Add(float64(events))
}

// Resynced counts a resync frame sent, for reason.
func (m *Worker) Resynced(reason string) {
	if c, ok := m.rec.resyncs[reason]; ok {
		c.Inc()
	}
}

// Duplicate counts an event a socket already had.
func (m *Worker) Duplicate() { m.rec.duplicates.Inc() }

// TransientDropped counts a transient event dropped while a socket held
// frames past its bounds.
func (m *Worker) TransientDropped() { m.rec.transientDropped.Inc() }
