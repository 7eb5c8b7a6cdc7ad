//go:build !unix

package ws

// peeker is only used where a socket can be peeked at.
type peeker struct{}

// awaitNetwork cannot peek at a socket here: the reader then waits inside
// gorilla's read, which costs a deeper goroutine stack per idle socket but
// is otherwise the same.
func (c *Conn) awaitNetwork() (int, []byte, bool) { return 0, nil, false }
