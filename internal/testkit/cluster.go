package testkit

import (
	"fmt"
	"slices"
)

// AddGateway starts one more gateway (its own supervisor and workers, on
// ports of its own) on the stack's NATS and Redis, waits until every worker
// is ready, and returns a Stack that reaches it: its Addr, MetricsAddr and
// Gateway are the new gateway's, everything else is shared with s.
func (s *Stack) AddGateway() *Stack {
	s.t.Helper()
	return s.AddGatewayWith()
}

// AddGatewayWith is AddGateway with env added to the new gateway's
// environment after the stack's: a variable set again wins, and one set
// empty counts as unset (a gateway restarted with a setting changed).
func (s *Stack) AddGatewayWith(env ...string) *Stack {
	s.t.Helper()
	g := *s
	g.opts.Env = append(slices.Clip(s.opts.Env), env...)
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
	return s.AddHandlersWith()
}

// AddHandlersWith is AddHandlers with env added to the new instance's
// environment after the stack's, as AddGatewayWith.
func (s *Stack) AddHandlersWith(env ...string) *Stack {
	s.t.Helper()
	h := *s
	h.opts.HandlersEnv = append(slices.Clip(s.opts.HandlersEnv), env...)
	h.HandlersAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(s.t))
	h.StartHandlers()
	return &h
}
