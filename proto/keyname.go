package proto

// asciiKey decodes the quoted JSON string key (its quotes included) when
// its text is at most len(buf) bytes of ASCII, into buf, without
// allocating: ok is false for a longer text, one that is not ASCII, or an
// escape that does not decode. The envelope's own keys ("event", "args",
// "ref", "idem") are all this short, so any other key is told apart from
// them without decoding it: a frame of thousands of escaped keys costs no
// garbage.
func asciiKey(key []byte, buf *[8]byte) (n int, ok bool) {
	if len(key) < 2 || key[0] != '"' || key[len(key)-1] != '"' {
		return 0, false
	}
	inner := key[1 : len(key)-1]
	// Each character of the text takes at most 6 bytes (\u0061).
	if len(inner) > 6*len(buf) {
		return 0, false
	}
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' {
			if i+1 >= len(inner) {
				return 0, false
			}
			i++
			switch inner[i] {
			case '"', '\\', '/':
				c = inner[i]
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'u':
				if i+4 >= len(inner) {
					return 0, false
				}
				var r int
				for _, h := range inner[i+1 : i+5] {
					r <<= 4
					switch {
					case '0' <= h && h <= '9':
						r |= int(h - '0')
					case 'a' <= h && h <= 'f':
						r |= int(h-'a') + 10
					case 'A' <= h && h <= 'F':
						r |= int(h-'A') + 10
					default:
						return 0, false
					}
				}
				if r >= 0x80 {
					return 0, false
				}
				c, i = byte(r), i+4
			default:
				return 0, false
			}
		} else if c >= 0x80 {
			return 0, false
		}
		if n == len(buf) {
			return 0, false
		}
		buf[n] = c
		n++
	}
	return n, true
}
