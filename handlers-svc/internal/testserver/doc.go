// Package testserver starts the real servers the tests run against: a
// redis-server process found in PATH, and an embedded NATS server from
// github.com/nats-io/nats-server/v2. Nothing is mocked. Every server is
// stopped when the test that started it ends.
//
// A missing redis-server binary fails the test rather than skipping it;
// `make test` installs it.
package testserver
