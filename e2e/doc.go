// Package e2e holds the end-to-end tests: the real gateway and handlers-svc
// binaries, a real redis-server and a real NATS server, a gateway with two
// worker processes, and WebSocket clients speaking the wire contract.
package e2e
