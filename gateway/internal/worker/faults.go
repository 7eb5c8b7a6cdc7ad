//go:build !faultinject

package worker

import (
	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// frameHandler returns what a socket's read loop hands frames to: its
// session. (A gateway built with -tags faultinject may wrap it: see
// faults_faultinject.go.)
func (w *Worker) frameHandler(s *forward.Session) ws.FrameHandler { return s }

// warnFaults logs the fault injections configured: none in this build.
func (w *Worker) warnFaults() {}
