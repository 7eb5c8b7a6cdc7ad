package loadgen

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
)

func TestParseRedisInfo(t *testing.T) {
	info := "# Memory\r\nused_memory:1234567\r\nused_memory_human:1.18M\r\nused_memory_rss:9000000\r\n" +
		"# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=100\r\ndb3:keys=5,expires=0,avg_ttl=0\r\ndbx:keys=99\r\n"
	st, err := ParseRedisInfo(info)
	if err != nil {
		t.Fatal(err)
	}
	if st.UsedMemory != 1234567 || st.Keys != 17 {
		t.Errorf("got %+v, want used_memory 1234567 and 17 keys (db0 and db3, not dbx)", st)
	}
	if st, err := ParseRedisInfo("# Memory\nused_memory:10\n"); err != nil || st != (RedisStat{UsedMemory: 10}) {
		t.Errorf("no keyspace: %+v, %v", st, err)
	}
	for _, bad := range []string{"", "# Keyspace\ndb0:keys=1\n", "used_memory:x\n", "used_memory:1\ndb0:keys=-\n"} {
		if _, err := ParseRedisInfo(bad); err == nil {
			t.Errorf("ParseRedisInfo(%q): no error", bad)
		}
	}
}

func TestReadBulk(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("$5\r\nhello\r\n$0\r\n\r\n-ERR nope\r\n$3\r\nabcd\r\n"))
	if s, err := readBulk(br); err != nil || s != "hello" {
		t.Errorf("first: %q, %v", s, err)
	}
	if s, err := readBulk(br); err != nil || s != "" {
		t.Errorf("empty: %q, %v", s, err)
	}
	if _, err := readBulk(br); err == nil || err.Error() != "ERR nope" {
		t.Errorf("error reply: %v", err)
	}
	if _, err := readBulk(br); err == nil {
		t.Error("a bulk string longer than its length: no error")
	}
	for _, bad := range []string{":1\r\n", "$-1\r\n", "$99999999\r\n", "$3\r\nab"} {
		if _, err := readBulk(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("readBulk(%q): no error", bad)
		}
	}
}

// TestReadRedis asks a real Redis: its memory is there, and a key written
// shows in the count.
func TestReadRedis(t *testing.T) {
	r := testkit.StartRedis(t)
	st, err := ReadRedis(r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if st.UsedMemory <= 0 || st.Keys != 0 {
		t.Errorf("fresh Redis: %+v", st)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("SET: %q, %v", line, err)
	}
	if st, err := ReadRedis(r.Addr()); err != nil || st.Keys != 1 {
		t.Errorf("after SET: %+v, %v", st, err)
	}
}
