package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Calibration is how fast this host ran three fixed workloads, measured by
// Calibrate while nothing else of a benchmark runs: a figure of the host,
// not of switchboard, so that runs of different days can be told apart by
// their host before they are compared by their code.
type Calibration struct {
	Mode string `json:"mode"` // always "calibrate"
	// CPUNs is nanoseconds per iteration of CPUWorkload, on one thread.
	CPUWorkload string  `json:"cpu_workload"`
	CPUNs       float64 `json:"cpu_ns"`
	// RTTUs is microseconds per round trip of 64 bytes over a TCP
	// connection on 127.0.0.1 between two threads, each blocked in read(2)
	// until the other's write(2) wakes it: two wake-ups and four system
	// calls, what each hop of the stack pays (a write on loopback that
	// wakes a reader in another process).
	RTTUs float64 `json:"rtt_us"`
	// WriteNs is nanoseconds per write(2) of 64 bytes to such a connection
	// that no thread waits on, drained in bulk between batches: the system
	// call and the loopback TCP path without a wake-up.
	WriteNs float64 `json:"write_ns"`
	Reps    int     `json:"reps"`   // repetitions of each workload; each figure is their median
	TookS   float64 `json:"took_s"` // how long the whole calibration took
}

// CalibrateOptions sizes a calibration; the zero value is the default.
type CalibrateOptions struct {
	Reps int           // measured repetitions of each workload (5)
	Rep  time.Duration // about how long each repetition runs (200 ms)
}

// calibCPUWorkload names the CPU workload in Calibration.CPUWorkload.
const calibCPUWorkload = "encoding/json Marshal+Unmarshal of a dispatch"

// calibMsgSize is the bytes of a round trip's message and of each write.
const calibMsgSize = 64

// calibWriteBatch is the writes between two drains: 2 KiB, far below a
// loopback socket's buffers, so that a write never waits for room.
const calibWriteBatch = 32

// Calibrate measures this host: a CPU workload, a loopback round trip and
// a loopback write (Calibration), each the median of o.Reps repetitions of
// about o.Rep, after a warm-up that sizes them; about 3.5 s at the
// defaults. Its traffic goes to 127.0.0.1 only. It sets GOMAXPROCS to 1 for
// the CPU workload, so that the garbage collector's share is on the same
// thread, and to at least 2 for the round trips, so that each of their two
// threads keeps a P while it waits in read(2); it restores it after. Run it
// alone in its process, and on an idle machine: it measures what the
// machine gives it.
func Calibrate(ctx context.Context, o CalibrateOptions) (Calibration, error) {
	if o.Reps <= 0 {
		o.Reps = 5
	}
	if o.Rep <= 0 {
		o.Rep = 200 * time.Millisecond
	}
	start := time.Now()
	c := Calibration{Mode: "calibrate", CPUWorkload: calibCPUWorkload, Reps: o.Reps}
	cpu, err := calibrateCPU(ctx, o)
	if err != nil {
		return c, fmt.Errorf("cpu: %w", err)
	}
	rtt, err := calibrateRoundTrip(ctx, o)
	if err != nil {
		return c, fmt.Errorf("round trip: %w", err)
	}
	write, err := calibrateWrite(ctx, o)
	if err != nil {
		return c, fmt.Errorf("write: %w", err)
	}
	c.CPUNs = round(cpu, 1)
	c.RTTUs = round(rtt/1e3, 2)
	c.WriteNs = round(write, 1)
	c.TookS = round(time.Since(start).Seconds(), 2)
	return c, nil
}

// JSON returns c as one JSON line.
func (c Calibration) JSON() string {
	b, _ := json.Marshal(c)
	return string(b)
}

func round(f float64, prec int) float64 {
	p := math.Pow(10, float64(prec))
	return math.Round(f*p) / p
}

// medianPerOp returns the median over o.Reps repetitions of the
// nanoseconds per operation of work, which does n operations and returns
// the time they took. n is sized first, as testing.B sizes its loops: grown
// until a run takes a tenth of o.Rep, then scaled to o.Rep; those sizing
// runs are the warm-up. Every repetition then does the same n. When ctx
// ends, its error is returned, whatever work's was (a socket shut down
// under it).
func medianPerOp(ctx context.Context, o CalibrateOptions, work func(n int) (time.Duration, error)) (float64, error) {
	run := func(n int) (time.Duration, error) {
		d, err := work(n)
		if cerr := ctx.Err(); cerr != nil {
			return 0, cerr
		}
		return d, err
	}
	n := 1
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		d, err := run(n)
		if err != nil {
			return 0, err
		}
		if d >= o.Rep/10 {
			n = max(1, int(float64(n)*float64(o.Rep)/float64(d)))
			break
		}
		n *= 4
	}
	per := make([]float64, 0, o.Reps)
	for range o.Reps {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		d, err := run(n)
		if err != nil {
			return 0, err
		}
		per = append(per, float64(d)/float64(n))
	}
	slices.Sort(per)
	if len(per)%2 == 1 {
		return per[len(per)/2], nil
	}
	return (per[len(per)/2-1] + per[len(per)/2]) / 2, nil
}

// calibDispatch is a dispatch as the services marshal one, a frozen copy
// of the shape of proto.Dispatch (not the type itself, so that the figure
// does not move when proto's does).
type calibDispatch struct {
	Event     string            `json:"event"`
	Args      json.RawMessage   `json:"args"`
	Users     []string          `json:"users"`
	Conns     []string          `json:"conns"`
	Broadcast bool              `json:"broadcast"`
	Except    []string          `json:"except,omitempty"`
	Pos       map[string]string `json:"pos,omitempty"`
}

func calibMessage() calibDispatch {
	return calibDispatch{
		Event: "message",
		Args:  json.RawMessage(`{"from":"u1","to":"u0","text":"t=1733350000123456789 hello there","client_id":"c-42","at":1733350000123}`),
		Users: []string{"u0"},
		Conns: []string{"u0-d0", "u0-d1"},
		Pos:   map[string]string{"u0": "1733350000123-0"},
	}
}

// calibrateCPU times the CPU workload: encoding/json Marshal and Unmarshal
// of a dispatch-like struct, rather than sha256 of a block. It is what our
// services spend their own CPU on (reflection, small allocations and the
// garbage collector, branches and memory), where one hashing loop measures
// a single instruction path that the SHA extensions of some CPUs shortcut,
// so it moves with the host the way the services do. It also moves with
// Go's encoding/json: compare it between runs of one Go version.
func calibrateCPU(ctx context.Context, o CalibrateOptions) (float64, error) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	in := calibMessage()
	return medianPerOp(ctx, o, func(n int) (time.Duration, error) {
		start := time.Now()
		for range n {
			b, err := json.Marshal(&in)
			if err != nil {
				return 0, err
			}
			var out calibDispatch
			if err := json.Unmarshal(b, &out); err != nil {
				return 0, err
			}
			if out.Event != in.Event || len(out.Conns) != len(in.Conns) {
				return 0, fmt.Errorf("decoded %+v", out)
			}
		}
		return time.Since(start), nil
	})
}

// calibrateRoundTrip times round trips of calibMsgSize bytes between this
// goroutine and an echoing one, each on an OS thread of its own, in
// blocking system calls on sockets the Go poller knows nothing of: each
// hop is one write that wakes a thread asleep in read(2), and no poller
// thread is woken beside it.
func calibrateRoundTrip(ctx context.Context, o CalibrateOptions) (float64, error) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	client, server, err := tcpPair()
	if err != nil {
		return 0, err
	}
	stop := shutdownOnDone(ctx, client, server)
	echoed := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := echo(server)
		// An echo that failed leaves the client's read with end of file.
		_ = unix.Shutdown(server, unix.SHUT_RDWR)
		echoed <- err
	}()

	runtime.LockOSThread()
	msg, buf := make([]byte, calibMsgSize), make([]byte, calibMsgSize)
	per, err := medianPerOp(ctx, o, func(n int) (time.Duration, error) {
		start := time.Now()
		for range n {
			if err := writeFull(client, msg); err != nil {
				return 0, err
			}
			if err := readFull(client, buf); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	})
	runtime.UnlockOSThread()
	_ = unix.Shutdown(client, unix.SHUT_WR) // the echo reads end of file and returns
	eerr := <-echoed
	stop()
	_ = unix.Close(client)
	_ = unix.Close(server)
	if err != nil {
		return 0, errors.Join(err, eerr)
	}
	return per, eerr
}

// echo writes back every calibMsgSize bytes it reads from fd, until end
// of file.
func echo(fd int) error {
	buf := make([]byte, calibMsgSize)
	for {
		if err := readFull(fd, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := writeFull(fd, buf); err != nil {
			return err
		}
	}
}

// calibrateWrite times writes of calibMsgSize bytes, calibWriteBatch at a
// time, each batch then read back whole on the other end (not timed), so
// that no thread waits on the socket while it is written to.
func calibrateWrite(ctx context.Context, o CalibrateOptions) (float64, error) {
	client, server, err := tcpPair()
	if err != nil {
		return 0, err
	}
	defer unix.Close(client)
	defer unix.Close(server)
	defer shutdownOnDone(ctx, client, server)()
	msg, buf := make([]byte, calibMsgSize), make([]byte, calibMsgSize*calibWriteBatch)
	// One operation is one write; n is rounded up to whole batches.
	return medianPerOp(ctx, o, func(n int) (time.Duration, error) {
		var took time.Duration
		for done := 0; done < n; done += calibWriteBatch {
			start := time.Now()
			for range calibWriteBatch {
				if err := writeFull(client, msg); err != nil {
					return 0, err
				}
			}
			took += time.Since(start)
			if err := readFull(server, buf); err != nil {
				return 0, err
			}
		}
		// Per write: scale the batches' time to n writes.
		batches := (n + calibWriteBatch - 1) / calibWriteBatch
		return took * time.Duration(n) / time.Duration(batches*calibWriteBatch), nil
	})
}

// shutdownOnDone shuts the sockets fds down when ctx ends, which wakes a
// read blocked on any of them with end of file. The function it returns
// stops that, and waits for a shutdown under way, so that the sockets may
// be closed after it (and their numbers reused) safely.
func shutdownOnDone(ctx context.Context, fds ...int) (stop func()) {
	done := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(done)
		for _, fd := range fds {
			_ = unix.Shutdown(fd, unix.SHUT_RDWR)
		}
	})
	return func() {
		if !stopAfter() {
			<-done
		}
	}
}

// tcpPair returns the two ends of a TCP connection on 127.0.0.1, as
// blocking sockets with TCP_NODELAY (as Go sets it on its own), made
// with plain system calls so that the Go poller does not watch them.
func tcpPair() (client, server int, err error) {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(ln)
	unix.CloseOnExec(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return -1, -1, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		return -1, -1, fmt.Errorf("listen: %w", err)
	}
	addr, err := unix.Getsockname(ln)
	if err != nil {
		return -1, -1, fmt.Errorf("getsockname: %w", err)
	}
	client, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("socket: %w", err)
	}
	unix.CloseOnExec(client)
	// A connect on loopback completes in the call, the listener's backlog
	// holding the connection until the accept.
	if err := unix.Connect(client, addr); err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("connect: %w", err)
	}
	server, _, err = unix.Accept(ln)
	if err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("accept: %w", err)
	}
	unix.CloseOnExec(server)
	for _, fd := range []int{client, server} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			unix.Close(client)
			unix.Close(server)
			return -1, -1, fmt.Errorf("TCP_NODELAY: %w", err)
		}
	}
	return client, server, nil
}

// readFull reads len(p) bytes from the blocking socket fd; io.EOF when it
// ends before the first byte, io.ErrUnexpectedEOF after.
func readFull(fd int, p []byte) error {
	for n := 0; n < len(p); {
		m, err := unix.Read(fd, p[n:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		case m == 0 && n == 0:
			return io.EOF
		case m == 0:
			return io.ErrUnexpectedEOF
		}
		n += m
	}
	return nil
}

// writeFull writes p to the blocking socket fd.
func writeFull(fd int, p []byte) error {
	for n := 0; n < len(p); {
		m, err := unix.Write(fd, p[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}
