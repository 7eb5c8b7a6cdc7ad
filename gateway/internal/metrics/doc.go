// Package metrics is the gateway's Prometheus instrumentation.
//
// Each worker process keeps its own registry (Worker): the standard Go and
// process collectors plus the switchboard_gateway_* series, updated from the
// socket, forwarding and fan-out paths through counters resolved once, so
// that recording a frame or a delivery costs an atomic add and no
// allocation. A worker serves its registry on a private unix socket in a
// directory the supervisor creates (SocketPath).
//
// The supervisor owns the one public /metrics endpoint (Aggregator): on every
// scrape it reads each worker's registry over its socket, adds the label
// worker="N" to every series, and merges them with its own series, such as
// worker restarts. All types here are safe for concurrent use.
package metrics
