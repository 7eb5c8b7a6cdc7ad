// Package supervisor runs a gateway's worker processes: it binds one
// SO_REUSEPORT listener per worker on the shared address, hands it to the
// worker as file descriptor 3, restarts a worker that dies with exponential
// back-off (the restarted worker keeps its index), and on shutdown signals
// every worker to stop gracefully and waits for them.
//
// A crash loop (Config.CrashLoopAfter crashes in a row, each soon after its
// start) is capped, not given up on: the worker keeps being restarted, no
// faster than every Config.MaxBackoff, and the loop is logged once. The
// other workers are not touched.
//
// Processes are started through a StartFunc, so the restart logic is tested
// without forking.
package supervisor
