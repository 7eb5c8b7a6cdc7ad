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
// A worker that is alive but hung is caught by the watchdog
// (Config.HangTimeout): each worker writes a byte to a pipe the supervisor
// reads (Beat, on HeartbeatFD), from a goroutine of its own woken by a
// timer; a worker silent for HangTimeout is killed with SIGKILL and
// restarted as if it had crashed, and Hung reports it until it is gone.
// It watches during shutdown too, where a worker hung while draining is
// killed at HangTimeout rather than at the end of Config.StopTimeout, and
// not restarted.
// One goroutine per watched worker reads its pipe; it ends when the worker
// has exited.
//
// With Config.Announced set (the lifecycle hooks on), each worker also
// records, on a pipe of its own (AnnounceEnv), the sockets whose connect
// it announced and, before it announces it, each disconnect (package
// announced); one goroutine per worker reads it into a bounded set, until
// the worker has exited. A worker that exits other than by a drain
// (killed, crashed, a non-zero status) leaves its set to the worker
// started in its slot, in an unlinked file (OrphansEnv), which announces
// their disconnects; a clean exit, or one during the supervisor's stop,
// leaves nothing.
//
// Processes are started through a StartFunc, so the restart logic is tested
// without forking.
package supervisor
