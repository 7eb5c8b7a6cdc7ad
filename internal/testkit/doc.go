// Package testkit starts the real servers switchboard's tests run against:
// redis-server (the binary on PATH), an embedded NATS server, and the
// gateway and handlers-svc binaries themselves, built once per test
// process; it also has a WebSocket client that records frames, a poller
// (Eventually), and readers of /metrics pages and JSON logs. Nothing here
// is a mock. Every server and process is stopped when the test that
// started it ends.
//
// A missing redis-server binary fails the test rather than skipping it;
// `make test` installs it.
package testkit
