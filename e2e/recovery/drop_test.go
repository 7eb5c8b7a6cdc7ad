package recovery

import (
	"testing"
	"time"
)

// TestDropOneSecond: under load, devices lose their network for about a
// second, a third of them at a time, and come back resuming from the last
// position they processed, on whichever worker: every resume recovers,
// replaying what the device missed, and every device gets every event
// exactly once, in order.
func TestDropOneSecond(t *testing.T) {
	rate := Rate(200)
	h := Start(t, Options{Users: UsersFor(rate)})
	h.StartLoad(LoadOptions{Rate: rate, Broadcasts: 10})
	goal := EventsGoal(loadTests, 2000)
	for round := 0; round < 3 || h.Events() < goal; round++ {
		h.WaitEvents(100)
		for i, d := range h.Devices {
			if i%3 == round%3 {
				d.Drop(time.Second)
				h.Fault()
			}
		}
		h.WaitOnline()
	}
	r := h.Settle()
	record(r)
	assertAllRecovered(t, r, h.faults)
}

// TestDropMostOfWindow: devices are away for most of the history window
// (7 of 12 s) while events flow, half of them at a time, and still every
// resume recovers every event they missed. GATEWAY_MAX_REPLAY is raised so
// that what is tested is the window, not the replay limit. The devices
// drop once they have caught up, and the margin is for the time they take
// to reconnect: the oldest event a device misses was dispatched when it
// was last caught up.
func TestDropMostOfWindow(t *testing.T) {
	const window, away = 12 * time.Second, 7 * time.Second
	rate := Rate(200)
	h := Start(t, Options{Users: UsersFor(rate), Window: window, Env: []string{"GATEWAY_MAX_REPLAY=100000"}})
	h.StartLoad(LoadOptions{Rate: rate, Broadcasts: 10})
	goal := EventsGoal(loadTests, 1000)
	for round := 0; round < 1 || h.Events() < goal; round++ {
		h.WaitEvents(100)
		h.WaitCaughtUp() // so that the devices miss away's worth, not more
		for i, d := range h.Devices {
			if i%2 == round%2 {
				d.Drop(away)
				h.Fault()
			}
		}
		h.WaitOnline()
	}
	r := h.Settle()
	record(r)
	assertAllRecovered(t, r, h.faults)
}

// assertAllRecovered fails the test unless each of at least resumes
// resumes recovered, something was replayed, and no socket had a resync.
func assertAllRecovered(t *testing.T, r Result, resumes int) {
	t.Helper()
	assertRecovered(t, r, resumes, true)
}

// assertRecovered is assertAllRecovered, where replay says whether some
// event must have been replayed: a test whose devices may come back before
// anything was sent to them passes false.
func assertRecovered(t *testing.T, r Result, resumes int, replay bool) {
	t.Helper()
	s := r.Stats
	if s.NotRecovered != 0 || s.Resynced() != 0 || s.Recovered < resumes || (replay && s.Replayed == 0) {
		t.Fatalf("resumes: %d recovered (want at least %d, all), %d not, %d replayed, resyncs %v; gateway %v",
			s.Recovered, resumes, s.NotRecovered, s.Replayed, s.Resyncs, r.Metrics)
	}
	t.Logf("%d events checked; %d resumes, all recovered, %d events replayed; gateway: %v",
		s.Events, s.Resumes, s.Replayed, r.Metrics)
}
