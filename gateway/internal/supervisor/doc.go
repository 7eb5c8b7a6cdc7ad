// Package supervisor runs a gateway's worker processes: it binds one
// SO_REUSEPORT listener per worker on the shared address, hands it to the
// worker as file descriptor 3, restarts a worker that dies with exponential
// back-off (the restarted worker keeps its index), and on shutdown signals
// every worker to stop gracefully and waits for them.
//
// Processes are started through a StartFunc, so the restart logic is tested
// without forking.
package supervisor
