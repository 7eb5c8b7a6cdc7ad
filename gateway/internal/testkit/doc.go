// Package testkit starts the real servers the gateway's integration and
// end-to-end tests run against: redis-server (the binary on PATH), an
// embedded NATS server, and the switchboard binaries themselves, plus a
// WebSocket client that records frames. Nothing here is a mock.
package testkit
