package ws

// ClientFrame lets the external tests write raw client frames.
var ClientFrame = clientFrame

// MeterSource is what c's meter reads the network through; nil when c has
// no meter.
func MeterSource(c *Conn) any {
	if c.meter == nil {
		return nil
	}
	return c.meter.net
}
