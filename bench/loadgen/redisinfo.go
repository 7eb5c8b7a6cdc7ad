package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// RedisStat is what Redis says about its memory: how much the recovery
// streams cost is the difference between two stacks, or two moments.
type RedisStat struct {
	UsedMemory int64 // INFO memory: used_memory, bytes
	Keys       int64 // INFO keyspace: keys of every database
}

// redisTimeout bounds one ReadRedis.
const redisTimeout = 3 * time.Second

// ReadRedis asks the Redis at addr (host:port, no password) for INFO memory
// and INFO keyspace. It speaks RESP itself: the load generator needs two
// commands, not a client library.
func ReadRedis(addr string) (RedisStat, error) {
	c, err := net.DialTimeout("tcp", addr, redisTimeout)
	if err != nil {
		return RedisStat{}, fmt.Errorf("redis %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(redisTimeout))
	cmd := "*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n"
	if _, err := io.WriteString(c, cmd); err != nil {
		return RedisStat{}, fmt.Errorf("redis %s: %w", addr, err)
	}
	br := bufio.NewReader(c)
	mem, err := readBulk(br)
	if err != nil {
		return RedisStat{}, fmt.Errorf("redis %s: INFO memory: %w", addr, err)
	}
	ks, err := readBulk(br)
	if err != nil {
		return RedisStat{}, fmt.Errorf("redis %s: INFO keyspace: %w", addr, err)
	}
	return ParseRedisInfo(mem + ks)
}

// maxBulk bounds a bulk reply readBulk accepts: INFO is a few kilobytes.
const maxBulk = 1 << 20

// readBulk reads one RESP bulk string ("$<n>\r\n<n bytes>\r\n"); an error
// reply ("-...") is returned as an error.
func readBulk(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if msg, ok := strings.CutPrefix(line, "-"); ok {
		return "", errors.New(msg)
	}
	size, ok := strings.CutPrefix(line, "$")
	if !ok {
		return "", fmt.Errorf("reply %q: want a bulk string", line)
	}
	n, err := strconv.Atoi(size)
	if err != nil || n < 0 || n > maxBulk {
		return "", fmt.Errorf("reply %q: bad length", line)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	if string(buf[n:]) != "\r\n" {
		return "", errors.New("bulk string not ended by CRLF")
	}
	return string(buf[:n]), nil
}

// ParseRedisInfo reads used_memory and the keyspace lines
// ("db0:keys=12,expires=3,avg_ttl=0") from INFO text. used_memory is
// required; no keyspace line means no keys.
func ParseRedisInfo(info string) (RedisStat, error) {
	var st RedisStat
	found := false
	for line := range strings.Lines(info) {
		line = strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return st, fmt.Errorf("used_memory %q", v)
			}
			st.UsedMemory, found = n, true
			continue
		}
		name, fields, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "db") {
			continue
		}
		if _, err := strconv.Atoi(name[2:]); err != nil {
			continue
		}
		for _, f := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(f, "keys="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return st, fmt.Errorf("%s keys %q", name, v)
				}
				st.Keys += n
			}
		}
	}
	if !found {
		return st, errors.New("no used_memory in INFO")
	}
	return st, nil
}
