// Package recovery is the fault matrix of zero-gap delivery (issue 11,
// docs/protocol.md section 6) over the real binaries: users with devices on
// different workers receive numbered events while devices drop and resume,
// workers are killed, the gateway restarts, the Redis link stalls and
// Redis restarts; a seqcheck.Checker checks every frame every device
// processes.
//
// The non-test files are the driver: Device (a client device that keeps
// the last position it processed and resumes with it on every reconnect),
// Load (authors that dispatch postUpdated events through the gateway, and a
// backend that dispatches broadcasts, each told to the checker with the
// dispatching side's answer as truth), Proxy (a TCP fault proxy in front of
// Redis) and Harness, which wires them to a testkit.Stack.
//
// SOAK_EVENTS sets how many events the load-bearing tests push through
// their faults, in all (a short run by default, as `make test` has it);
// `make soak` runs them with a million and writes bench/results/soak.md.
//
// # Concurrency
//
// Each Device, each author and the broadcaster run on goroutines of their
// own, started by Start methods and ended, and waited for, by the test's
// cleanup; a Device's frames reach the checker from its one reader, in
// order.
package recovery
