package presence

// sockets is one user's local sockets. Their ids, and the user's key, are
// kept boxed as the commands take them, so a refresh boxes nothing.
type sockets struct {
	key   any   // proto.UserPresenceKey, a string
	conns []any // ids of its open local sockets, strings
	// index holds each conn's position in conns, once there are more
	// than indexFrom.
	index map[string]int
}

func (s *sockets) find(conn string) int {
	if s.index != nil {
		if i, ok := s.index[conn]; ok {
			return i
		}
		return -1
	}
	for i, c := range s.conns {
		if c.(string) == conn {
			return i
		}
	}
	return -1
}

// add adds conn and returns its id, and whether it is new.
func (s *sockets) add(conn string) (any, bool) {
	if i := s.find(conn); i >= 0 {
		return s.conns[i], false
	}
	id := any(conn)
	s.conns = append(s.conns, id)
	switch {
	case s.index != nil:
		s.index[conn] = len(s.conns) - 1
	case len(s.conns) > indexFrom:
		s.index = make(map[string]int, len(s.conns))
		for i, c := range s.conns {
			s.index[c.(string)] = i
		}
	}
	return id, true
}

// remove removes conn and returns its id, or nil when it is not there.
func (s *sockets) remove(conn string) any {
	i := s.find(conn)
	if i < 0 {
		return nil
	}
	id, last := s.conns[i], len(s.conns)-1
	s.conns[i], s.conns[last] = s.conns[last], nil
	s.conns = s.conns[:last]
	if s.index != nil {
		delete(s.index, conn)
		if i < last {
			s.index[s.conns[i].(string)] = i
		}
	}
	return id
}
