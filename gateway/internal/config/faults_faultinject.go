//go:build faultinject

package config

// Faults are the fault injections of the end-to-end tests, compiled only
// into a gateway built with -tags faultinject and read from the
// environment only: never a setting, never in Environ (the supervisor's
// workers inherit its environment).
type Faults struct {
	// PanicEvent makes frames of this event panic in their socket's read
	// loop, as a bug in connection code would; "" = off.
	PanicEvent string // SWITCHBOARD_TEST_PANIC_EVENT
}

// TestPanicEventEnv sets Faults.PanicEvent.
const TestPanicEventEnv = "SWITCHBOARD_TEST_PANIC_EVENT"

// loadFaults reads the fault injections from the environment.
func loadFaults(getenv func(string) string) Faults {
	return Faults{PanicEvent: getenv(TestPanicEventEnv)}
}
