package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// dialStalled connects user with a tiny receive buffer, reads the connected
// frame, and returns the raw socket, which the caller then stops reading:
// a phone that went into a tunnel. It retries until the socket lands on
// worker.
func dialStalled(t *testing.T, s *testkit.Stack, user string, worker int) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{
		HandshakeTimeout: wait,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
				})
				if err != nil {
					return err
				}
				return serr
			}}
			return nd.DialContext(ctx, network, addr)
		},
	}
	for range 200 {
		wsc, _, err := d.Dial(s.URL(), map[string][]string{"Authorization": {"Bearer " + s.Token(user)}})
		if err != nil {
			t.Fatalf("dial stalled client: %v", err)
		}
		_ = wsc.SetReadDeadline(time.Now().Add(wait))
		_, data, err := wsc.ReadMessage()
		if err != nil {
			t.Fatalf("connected frame: %v", err)
		}
		if strings.Contains(string(data), fmt.Sprintf(`"worker":%d`, worker)) {
			t.Cleanup(func() { _ = wsc.Close() })
			return wsc
		}
		_ = wsc.Close()
	}
	t.Fatalf("no stalled socket landed on worker %d", worker)
	return nil
}

// TestSlowConsumerStalledSocket: one socket stops reading while far more
// than its queue bound is sent to it, and a busy socket on the same worker
// keeps receiving. The busy socket gets every one of its messages (their
// latency is logged), the worker closes the stalled socket as a slow
// consumer and frees it although the socket's full TCP window means the
// 1008 frame itself may never reach it, and the worker's memory stays
// bounded.
func TestSlowConsumerStalledSocket(t *testing.T) {
	const queue = 128
	// The pusher sends the stalled socket far more than one sender may
	// send one recipient (handlers-svc/limit, 64 KiB/s): that bound is
	// off here, as the gateway's are, since what is tested is the
	// gateway's slow-consumer close, not the limits.
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{
		"GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0", "GATEWAY_SEND_QUEUE=" + strconv.Itoa(queue),
	}, HandlersEnv: []string{"HANDLERS_SEND_BYTES_PER_SEC=0"}})
	stalled := dialStalled(t, s, "stalled", 0)
	busy := s.DialOn("busy", 0)
	pusher, ticker := s.Dial("pusher"), s.Dial("ticker")
	pid := s.WorkerPids()[0]
	baseline := testkit.RSS(pid)

	// Sample the worker's memory throughout.
	var peak int64
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			peak = max(peak, testkit.RSS(pid))
			select {
			case <-stopSampling:
				return
			case <-tk.C:
			}
		}
	}()

	// 2000 messages of 4000 characters to the stalled user (8 MB, against
	// a queue of 128 frames and the kernel's socket buffers), with a timed
	// message to the busy user after every 20th.
	const bulk, every = 2000, 20
	big := strings.Repeat("x", 4000)
	ticks := bulk / every
	latencies := make(chan time.Duration, ticks)
	var receiving sync.WaitGroup
	receiving.Add(1)
	go func() {
		defer receiving.Done()
		defer close(latencies)
		for i := range ticks {
			want := fmt.Sprintf("tick %d ", i)
			f, ok := busy.TryExpect(60*time.Second, func(f proto.Frame) bool {
				return f.Event == "message" && strings.Contains(string(f.Args), want)
			})
			if !ok {
				return
			}
			text := decodeMessageArgs(f).Text
			sent, _ := strconv.ParseInt(text[strings.LastIndexByte(text, ' ')+1:], 10, 64)
			latencies <- time.Since(time.Unix(0, sent))
		}
	}()
	for i := range bulk {
		// The pusher gets a message_sent echo of each send in its own
		// queue of the same bound: every 20th send waits for its ack, by
		// which time the frames queued before the ack have been written,
		// so only the stalled socket can overflow, however slow the
		// machine is.
		ref := ""
		if i%every == every-1 {
			ref = "push " + strconv.Itoa(i)
		}
		if err := pusher.TrySend("sendMessage", map[string]any{"to": "stalled", "text": big}, ref); err != nil {
			t.Fatalf("pusher: %v", err)
		}
		if ref != "" {
			if f := pusher.ExpectRef(60*time.Second, ref); f.Event != proto.EventAck {
				t.Fatalf("pusher's send %d: %s %s", i, f.Event, f.Args)
			}
		}
		if i%every == 0 {
			text := fmt.Sprintf("tick %d %d", i/every, time.Now().UnixNano())
			if err := ticker.TrySend("sendMessage", map[string]any{"to": "busy", "text": text}, ""); err != nil {
				t.Fatalf("ticker: %v", err)
			}
		}
	}
	receiving.Wait()
	var got []time.Duration
	for l := range latencies {
		got = append(got, l)
	}
	if len(got) != ticks {
		t.Fatalf("the busy socket got %d of its %d messages", len(got), ticks)
	}
	slices.Sort(got)
	pct := func(p int) time.Duration { return got[(len(got)-1)*p/100] }
	t.Logf("busy socket next to a stalled one: %d messages, latency p50 %s p90 %s p99 %s max %s",
		len(got), pct(50), pct(90), pct(99), got[len(got)-1])

	// The worker has closed the stalled socket as a slow consumer: logged
	// with the close code and reason (the socket closes within WriteWait
	// of its last write blocking).
	testkit.Eventually(t, 60*time.Second, "the worker closes the stalled socket with 1008", func() bool {
		return testkit.CountLogs(s.Gateway.Logs(), "socket closed", map[string]any{
			"worker": 0, "user": "stalled", "code": proto.ClosePolicy, "reason": proto.ReasonSlowConsumer,
		}) == 1
	})
	// The socket count drops to the three sockets left: busy, pusher and
	// ticker (the stalled one is no longer counted, nor held).
	awaitMetrics(t, s, "only the busy, pusher and ticker sockets are open", func(m testkit.Samples) bool {
		return m.Sum("switchboard_gateway_connections_open") == 3
	})
	close(stopSampling)
	sampling.Wait()
	// And the socket really is closed on the server's side: once the
	// client reads what its buffers hold, it finds the end of the stream.
	_ = stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	var frames int
	var err error
	for {
		if _, _, err = stalled.ReadMessage(); err != nil {
			break
		}
		frames++
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stalled socket is still open on the server's side after %d buffered frames", frames)
	}
	t.Logf("stalled socket: %d frames were buffered in the kernel, then %v", frames, err)

	const bound = 256 << 20
	t.Logf("worker 0 RSS: %d MiB before, peak %d MiB while %d MiB were sent to the stalled socket",
		baseline>>20, peak>>20, (bulk*len(big))>>20)
	if peak-baseline > bound {
		t.Fatalf("worker 0 RSS grew by %d MiB, more than %d MiB", (peak-baseline)>>20, bound>>20)
	}
	assertOpen(t, busy, pusher, ticker)
}

// decodeMessageArgs decodes a message frame's args; it is for goroutines
// other than the test's, which must not fail the test.
func decodeMessageArgs(f proto.Frame) messageArgs {
	var m messageArgs
	_ = json.Unmarshal(f.Args, &m)
	return m
}
