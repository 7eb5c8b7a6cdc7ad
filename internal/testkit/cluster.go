package testkit

import "fmt"

// AddGateway starts one more gateway (its own supervisor and workers, on
// ports of its own) on the stack's NATS and Redis, waits until every worker
// is ready, and returns a Stack that reaches it: its Addr, MetricsAddr and
// Gateway are the new gateway's, everything else is shared with s.
func (s *Stack) AddGateway() *Stack {
	s.t.Helper()
	g := *s
	g.Addr = fmt.Sprintf("127.0.0.1:%d", FreePort(s.t))
	g.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(s.t))
	g.StartGateway()
	return &g
}

// AddHandlers starts one more handlers-svc on the stack's NATS and Redis,
// waits until it is ready, and returns a Stack whose Handlers and
// HandlersAddr are the new instance's, everything else shared with s.
func (s *Stack) AddHandlers() *Stack {
	s.t.Helper()
	h := *s
	h.HandlersAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(s.t))
	h.StartHandlers()
	return &h
}
