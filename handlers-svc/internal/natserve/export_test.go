package natserve

// MaxIdleWorkers is maxIdleWorkers, for the tests of the worker bound.
const MaxIdleWorkers = maxIdleWorkers

// IdleWorkers returns how many workers wait for a request.
func (s *Server) IdleWorkers() int { return int(s.idle.Load()) }
