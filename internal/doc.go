// Package internal is the root of what the gateway and handlers-svc share:
// code both services need and must not copy (health checks, readiness
// bodies, URL redaction, logging, back-off, the NATS link's settings) and
// the real Redis and NATS servers their tests start. Go's internal rule
// keeps it private to this repository's modules.
package internal
