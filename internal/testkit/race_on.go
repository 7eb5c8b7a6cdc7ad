//go:build race

package testkit

// raceEnabled makes the binaries under test carry the race detector too.
const raceEnabled = true
