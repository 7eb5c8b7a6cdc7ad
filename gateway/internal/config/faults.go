//go:build !faultinject

package config

// Faults is empty in a gateway built without -tags faultinject: fault
// injection is not compiled in (see faults_faultinject.go).
type Faults struct{}

// loadFaults reads nothing: this build injects no faults.
func loadFaults(func(string) string) Faults { return Faults{} }
