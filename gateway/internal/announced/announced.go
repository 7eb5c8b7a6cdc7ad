package announced

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// Kinds of record.
const (
	recConnect    = '+'
	recDisconnect = '-'
	recReset      = '!'
)

// MaxConnLen is the longest connection id recorded; a longer one (the
// gateway's are about 20 bytes) is left out, as if never announced.
const MaxConnLen = 64

// maxUserLen is the longest user id (proto.MaxUserLen); a record of one
// longer is left out likewise.
const maxUserLen = 256

// maxRecord is the longest record: within the smallest PIPE_BUF POSIX
// allows (512), so any record can be written atomically.
const maxRecord = 1 + 1 + MaxConnLen + 2 + maxUserLen

// maxSpare is how many written chunks a Writer keeps for reuse: a
// batch's worth.
const maxSpare = 8

// DefaultMaxPending is a Writer's bound on records waiting for the pipe,
// in bytes: some 25,000 connects.
const DefaultMaxPending = 1 << 20

// Writer records, on the write end of the supervisor's pipe, the connects
// and disconnects a worker announces. Connect and Disconnect append a
// record; Flush writes them. It is for one goroutine.
type Writer struct {
	raw syscall.RawConn
	f   *os.File

	chunks  [][]byte // records not yet written, each chunk at most pipeBuf bytes of whole records
	spare   [][]byte // chunks written, for reuse
	pending int      // bytes in chunks
	max     int
	lost    bool // records were dropped: a reset is owed before any other
	dead    bool // the pipe failed (the supervisor is gone): nothing more is written
	wait    bool // write waits for a full pipe, until the write deadline (FlushWithin)
}

// NewWriter returns a Writer on fd, the write end of the pipe, which it
// owns and puts in non-blocking mode, keeping at most maxPending bytes of
// records while the pipe is full.
func NewWriter(fd int, maxPending int) (*Writer, error) {
	// Non-blocking first, so that the File is pollable and its RawConn
	// can try a write without waiting.
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("announce fd %d: %w", fd, err)
	}
	f := os.NewFile(uintptr(fd), "announce")
	if f == nil {
		return nil, fmt.Errorf("announce fd %d: not a file", fd)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("announce fd %d: %w", fd, err)
	}
	return &Writer{raw: raw, f: f, max: max(maxPending, pipeBuf)}, nil
}

// Connect records that the connect of conn, a socket of user, was
// announced.
func (w *Writer) Connect(conn, user string) {
	if len(conn) > MaxConnLen || len(user) > maxUserLen {
		return
	}
	b := w.record(4 + len(conn) + len(user))
	b = append(b, recConnect, byte(len(conn)))
	b = append(b, conn...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(user)))
	w.commit(append(b, user...))
}

// Disconnect records that the disconnect of conn is about to be
// announced (or will not be: either way, never by a replacement).
func (w *Writer) Disconnect(conn string) {
	if len(conn) > MaxConnLen {
		return
	}
	b := w.record(2 + len(conn))
	b = append(b, recDisconnect, byte(len(conn)))
	w.commit(append(b, conn...))
}

// record returns the chunk to append a record of n bytes to, a new one
// when the last is full or already written in part.
func (w *Writer) record(n int) []byte {
	if w.pending+n > w.max {
		// The supervisor has not read for a long while: rather than grow,
		// drop what waits and have it forget what it knew.
		w.chunks, w.pending, w.lost = nil, 0, true
	}
	w.pending += n
	if k := len(w.chunks); k > 0 && len(w.chunks[k-1])+n <= pipeBuf {
		c := w.chunks[k-1]
		w.chunks = w.chunks[:k-1]
		return c
	}
	if k := len(w.spare); k > 0 {
		c := w.spare[k-1]
		w.spare = w.spare[:k-1]
		return c
	}
	return make([]byte, 0, pipeBuf)
}

func (w *Writer) commit(c []byte) { w.chunks = append(w.chunks, c) }

// Pending reports whether records wait for the pipe.
func (w *Writer) Pending() bool { return !w.dead && (len(w.chunks) > 0 || w.lost) }

// Flush writes the records appended, one write per chunk, and returns at
// once: what the pipe does not take now waits for the next Flush. It
// returns an error when the pipe has failed (the supervisor is gone),
// after which nothing more is written.
func (w *Writer) Flush() error {
	if w.dead {
		return errPipeGone
	}
	if w.lost {
		if ok, err := w.write([]byte{recReset}); !ok {
			return err
		}
		w.lost = false
	}
	for len(w.chunks) > 0 {
		c := w.chunks[0]
		ok, err := w.write(c)
		if !ok {
			return err
		}
		w.chunks[0] = nil
		w.chunks = w.chunks[1:]
		w.pending -= len(c)
		if len(w.spare) < maxSpare {
			w.spare = append(w.spare, c[:0])
		}
	}
	if len(w.chunks) == 0 {
		w.chunks = w.chunks[:0:0]
	}
	return nil
}

var errPipeGone = errors.New("announce pipe closed")

// FlushWithin is Flush, but waits up to d for a full pipe to take the
// records: for a disconnect, which must reach the supervisor before it is
// published, or a worker killed after publishing it would have it
// announced again by its replacement. It returns with records still
// pending (Pending) when the pipe took them not within d.
func (w *Writer) FlushWithin(d time.Duration) error {
	if err := w.Flush(); err != nil || !w.Pending() {
		return err
	}
	if err := w.f.SetWriteDeadline(time.Now().Add(d)); err != nil {
		return nil // not pollable: it cannot be waited for
	}
	w.wait = true
	defer func() {
		w.wait = false
		_ = w.f.SetWriteDeadline(time.Time{})
	}()
	return w.Flush()
}

// write writes c whole, in one write, or not at all (the pipe is full):
// a write of at most PIPE_BUF bytes to a pipe is atomic.
func (w *Writer) write(c []byte) (bool, error) {
	var n int
	var werr error
	if err := w.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), c)
		// Wait for the pipe only in FlushWithin, until its deadline.
		return !(w.wait && errors.Is(werr, syscall.EAGAIN))
	}); err != nil {
		werr = err
	}
	switch {
	case werr == nil && n == len(c):
		return true, nil
	case errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) || errors.Is(werr, os.ErrDeadlineExceeded):
		return false, nil
	case werr == nil:
		werr = io.ErrShortWrite // cannot be, for a pipe; the stream is broken
	}
	w.dead, w.chunks, w.pending = true, nil, 0
	return false, fmt.Errorf("announce pipe: %w", werr)
}

// Close closes the write end.
func (w *Writer) Close() error { return w.f.Close() }

// Orphan is a socket whose connect was announced and its disconnect not,
// of a worker that died: Lost is when its death was noticed, in Unix ms.
type Orphan struct {
	Conn, User string
	Lost       int64
}

type entry struct {
	user string
	lost int64 // 0 while its worker lives
}

// Set is one worker slot's sockets with a connect announced and no
// disconnect, at most a bound of them. It is safe for concurrent use.
type Set struct {
	mu      sync.Mutex
	m       map[string]entry
	max     int
	dropped int  // connects not kept, over the bound
	broken  bool // a malformed record: the set is not to be trusted
}

// NewSet returns an empty Set of at most max sockets.
func NewSet(max int) *Set { return &Set{m: make(map[string]entry), max: max} }

// Len returns the sockets in the set.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Dropped returns how many connects were not kept because the set was
// full: their disconnects are not announced should the worker die.
func (s *Set) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Add puts orphans in the set, within its bound: those handed to the
// worker that replaces theirs.
func (s *Set) Add(orphans []Orphan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range orphans {
		s.add(o.Conn, entry{user: o.User, lost: o.Lost})
	}
}

func (s *Set) add(conn string, e entry) {
	if _, ok := s.m[conn]; !ok && len(s.m) >= s.max {
		s.dropped++
		return
	}
	s.m[conn] = e
}

// Take empties the set and returns its sockets as orphans, those of the
// worker that has just died lost at lost; none when a malformed record
// made the set untrustworthy.
func (s *Set) Take(lost time.Time) []Orphan {
	s.mu.Lock()
	m, broken := s.m, s.broken
	s.m, s.broken = make(map[string]entry), false
	s.mu.Unlock()
	if broken {
		return nil
	}
	out := make([]Orphan, 0, len(m))
	ms := lost.UnixMilli()
	for conn, e := range m {
		if e.lost == 0 {
			e.lost = ms
		}
		out = append(out, Orphan{Conn: conn, User: e.user, Lost: e.lost})
	}
	return out
}

// Read applies the records read from r to s until r ends or fails. A
// malformed record marks s broken (Take hands nothing on) and the rest is
// read and ignored, so the worker's writes never fill the pipe.
func Read(r io.Reader, s *Set) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf [maxRecord]byte
	for {
		if err := s.readRecord(br, buf[:]); err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, os.ErrClosed) {
				s.mu.Lock()
				s.broken = true
				s.mu.Unlock()
				_, _ = io.Copy(io.Discard, br)
			}
			return
		}
	}
}

var errMalformed = errors.New("malformed announce record")

func (s *Set) readRecord(br *bufio.Reader, buf []byte) error {
	kind, err := br.ReadByte()
	if err != nil {
		return err
	}
	if kind == recReset {
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
		return nil
	}
	if kind != recConnect && kind != recDisconnect {
		return errMalformed
	}
	n, err := br.ReadByte()
	if err != nil {
		return err
	}
	if int(n) > MaxConnLen {
		return errMalformed
	}
	conn := buf[:n]
	if _, err := io.ReadFull(br, conn); err != nil {
		return err
	}
	if kind == recDisconnect {
		s.mu.Lock()
		delete(s.m, string(conn))
		s.mu.Unlock()
		return nil
	}
	var l [2]byte
	if _, err := io.ReadFull(br, l[:]); err != nil {
		return err
	}
	un := int(binary.BigEndian.Uint16(l[:]))
	if un > maxUserLen {
		return errMalformed
	}
	user := buf[n : int(n)+un]
	if _, err := io.ReadFull(br, user); err != nil {
		return err
	}
	s.mu.Lock()
	s.add(string(conn), entry{user: string(user)})
	s.mu.Unlock()
	return nil
}

// WriteOrphans writes orphans for ReadOrphans: the hand-off to a
// replacement worker.
func WriteOrphans(w io.Writer, orphans []Orphan) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var b []byte
	for _, o := range orphans {
		if len(o.Conn) > MaxConnLen || len(o.User) > maxUserLen {
			continue
		}
		b = binary.BigEndian.AppendUint64(b[:0], uint64(o.Lost))
		b = append(b, byte(len(o.Conn)))
		b = append(b, o.Conn...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(o.User)))
		b = append(b, o.User...)
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadOrphans reads what WriteOrphans wrote, at most max orphans; it
// returns those read before an error too.
func ReadOrphans(r io.Reader, max int) ([]Orphan, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []Orphan
	var buf [8 + 1 + MaxConnLen + 2 + maxUserLen]byte
	for len(out) < max {
		if _, err := io.ReadFull(br, buf[:9]); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, fmt.Errorf("orphans: %w", err)
		}
		lost := int64(binary.BigEndian.Uint64(buf[:8]))
		n := int(buf[8])
		if n > MaxConnLen {
			return out, fmt.Errorf("orphans: %w", errMalformed)
		}
		if _, err := io.ReadFull(br, buf[:n+2]); err != nil {
			return out, fmt.Errorf("orphans: %w", err)
		}
		conn := string(buf[:n])
		un := int(binary.BigEndian.Uint16(buf[n : n+2]))
		if un > maxUserLen {
			return out, fmt.Errorf("orphans: %w", errMalformed)
		}
		if _, err := io.ReadFull(br, buf[:un]); err != nil {
			return out, fmt.Errorf("orphans: %w", err)
		}
		out = append(out, Orphan{Conn: conn, User: string(buf[:un]), Lost: lost})
	}
	return out, nil
}
