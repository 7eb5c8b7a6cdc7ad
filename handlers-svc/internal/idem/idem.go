// Package idem keeps idempotency records in Redis: a key is reserved by
// the first request that names it, which then records its answer (to be
// replayed to repeats of it) or frees the key (nothing was done, so a
// repeat may run). The dispatch API's Idempotency-Key (package httpapi)
// and the idem of a socket's emits (package natserve) keep theirs here;
// docs/protocol.md sections 2 and 7.
//
// A record is one Redis string, "<state>:<hash>:<rest>": "p:<hash>:<token>"
// while its request runs or when its outcome is unknown, token being the
// reserving request's own, so that only it can record or free it, and
// ending in ".<deadline>", the reserving request's deadline in Unix ms (0
// for none), past which (and SettleGrace) a repeat stops waiting for it;
// "d:<hash>:<answer>" once answered; "u:<hash>:" once its request gave up
// with its outcome unknown (Abandon), so that a repeat is refused at once
// rather than waiting for an answer that cannot come. hash names the
// request (its body), so that a key used for another request is told
// apart.
package idem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors of Reserve for a key that is not the caller's.
var (
	// ErrPending: the request that reserved the key is running, or its
	// outcome is unknown.
	ErrPending = errors.New("idempotency key pending")
	// ErrOther: the key was used for another request (another hash).
	ErrOther = errors.New("idempotency key used for another request")
	// ErrUnknown: the request that reserved the key gave up with its
	// outcome unknown (Abandon); it is an ErrPending that Wait does not
	// wait for.
	ErrUnknown = fmt.Errorf("%w: outcome unknown", ErrPending)
)

const (
	statePending = "p:"
	stateDone    = "d:"
	stateUnknown = "u:"
)

// reserveScript sets KEYS[1] to ARGV[1] for ARGV[2] ms unless it exists,
// and returns its value if it does, false if it was set: SET NX and, when
// that fails, GET, in one atomic round trip (SET's GET option needs Redis
// 7).
var reserveScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// storeScript replaces the reservation ARGV[1] of KEYS[1] by the answer
// ARGV[2], for ARGV[3] ms; releaseScript deletes the reservation ARGV[1].
// Either does nothing to a key that holds something else (a reservation
// that expired and was taken again).
var (
	storeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
	return 1
end
return 0
`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
)

// abandonScript replaces the reservation ARGV[1] of KEYS[1] by ARGV[2]
// for the time the reservation had left (KEEPTTL needs Redis 6).
var abandonScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
return 1
`)

// releaseTimeout bounds the release of a reservation whose answer from
// Redis was lost.
const releaseTimeout = 2 * time.Second

// SettleGrace is how long past its deadline the holder of a key may still
// settle it (record, free or abandon: one command, natserve's bounded by
// 2 s; a Go caller of dispatch may first wait up to 2 s for the outcome of
// a dispatch in flight, then settle within 2 s): Wait does not wait for a
// holder past that, which went away (its process killed) without
// settling it.
const SettleGrace = 5 * time.Second

// Wait's intervals between tries of a pending key: from the first to the
// last, doubling.
const (
	firstWait = 10 * time.Millisecond
	lastWait  = 200 * time.Millisecond
)

// Store keeps records in a Redis (a Cluster too: every command names one
// key) for a fixed time from their first use.
type Store struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// New returns a Store that keeps its records in rdb for ttl.
func New(rdb redis.UniversalClient, ttl time.Duration) *Store {
	return &Store{rdb: rdb, ttl: ttl}
}

// TTL returns how long a record is kept from its key's first use.
func (s *Store) TTL() time.Duration { return s.ttl }

// Reservation is a request's hold on a key while it runs.
type Reservation struct {
	Key   string // the Redis key
	value string // the pending record, token included
	hash  string
}

// Reserve holds key for the request named by hash (no ':' in it), whose
// deadline is ctx's: a repeat waits for its answer (Wait) until then and
// SettleGrace. It returns the reservation; or the answer recorded under
// key, to replay; or ErrPending, ErrUnknown or ErrOther for a key held
// for another request; or Redis's error, after which nothing is held.
func (s *Store) Reserve(ctx context.Context, key, hash string) (*Reservation, []byte, error) {
	var token [16]byte
	_, _ = rand.Read(token[:])
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixMilli()
	}
	res := &Reservation{Key: key, hash: hash,
		value: statePending + hash + ":" + hex.EncodeToString(token[:]) + "." + strconv.FormatInt(deadline, 10)}
	return s.take(ctx, res)
}

// take runs the reservation script for res: Reserve's results.
func (s *Store) take(ctx context.Context, res *Reservation) (*Reservation, []byte, error) {
	v, err := reserveScript.Run(ctx, s.rdb, []string{res.Key}, res.value, s.ttl.Milliseconds()).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return res, nil, nil
	case err != nil:
		// The reservation may have been taken and its answer lost: undo
		// it, or a repeat would find it pending though nothing ran. On a
		// goroutine, bounded by releaseTimeout: the caller's answer
		// (unavailable) does not wait for it, on a Redis that just failed
		// to answer within the caller's whole deadline.
		go func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			_ = s.Release(rctx, res)
		}()
		return nil, nil, err
	}
	if v == res.value {
		// Our own reservation, read back: a client that sent the script
		// again after losing its reply (a cluster client retries on a
		// moved slot or a timeout) finds the key it took.
		return res, nil, nil
	}
	answer, err := parse(v, res.hash, time.Now())
	return nil, answer, err
}

// Wait is Reserve, but a key found pending is tried again, at intervals
// doubling from 10 ms to 200 ms, until it is answered or freed (then
// reserved) or ctx ends, when it returns ErrPending. A repeat that comes
// while the first request still runs gets its answer so. A key whose
// request gave up (Abandon), or whose request's deadline and SettleGrace
// have passed (it went away unsettled), is not waited for: ErrUnknown.
func (s *Store) Wait(ctx context.Context, key, hash string) (*Reservation, []byte, error) {
	wait := firstWait
	for {
		res, answer, err := s.Reserve(ctx, key, hash)
		if !errors.Is(err, ErrPending) || errors.Is(err, ErrUnknown) {
			return res, answer, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ErrPending
		case <-t.C:
		}
		wait = min(2*wait, lastWait)
	}
}

// parse returns the answer of record v for the request hash, or ErrOther,
// ErrUnknown (given up, or its holder's deadline and SettleGrace passed
// by now) or ErrPending.
func parse(v, hash string, now time.Time) ([]byte, error) {
	state, rest := v[:min(len(v), 2)], v[min(len(v), 2):]
	h, rest, sep := strings.Cut(rest, ":")
	if h != hash {
		return nil, ErrOther
	}
	switch state {
	case stateDone:
		if !sep || rest == "" {
			// Not what Record writes (a reply is never empty): nothing
			// to replay, and the outcome is not known.
			return nil, ErrUnknown
		}
		return []byte(rest), nil
	case stateUnknown:
		return nil, ErrUnknown
	}
	if _, d, ok := strings.Cut(rest, "."); ok {
		if ms, err := strconv.ParseInt(d, 10, 64); err == nil && ms > 0 && now.After(time.UnixMilli(ms).Add(SettleGrace)) {
			return nil, ErrUnknown
		}
	}
	return nil, ErrPending
}

// Record replaces res's reservation by answer, kept for the Store's
// ttl, if res still holds the key.
func (s *Store) Record(ctx context.Context, res *Reservation, answer []byte) error {
	return storeScript.Run(ctx, s.rdb, []string{res.Key}, res.value, stateDone+res.hash+":"+string(answer),
		s.ttl.Milliseconds()).Err()
}

// Abandon marks res's reservation as given up with its outcome unknown,
// if it still holds the key: the key stays taken for the time it had
// left, and a repeat (Reserve, Wait) gets ErrUnknown at once.
func (s *Store) Abandon(ctx context.Context, res *Reservation) error {
	return abandonScript.Run(ctx, s.rdb, []string{res.Key}, res.value, stateUnknown+res.hash+":").Err()
}

// Release deletes res's reservation, if it still holds the key.
func (s *Store) Release(ctx context.Context, res *Reservation) error {
	return releaseScript.Run(ctx, s.rdb, []string{res.Key}, res.value).Err()
}
