package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/proto"
)

// Disconnect asks the gateway to close sockets (docs/protocol.md section
// 7, an extension): every socket of each of Users and each of Conns, with
// close code 4003 and Reason (the client stops for good), or, with
// Reconnect, 4002 (the client reconnects at once with a fresh token and
// resumes). It is the body of POST /v1/disconnect.
//
// Without Revoke, a client that still holds a valid token can connect
// again. With Revoke (users only), the tokens of Users issued before the
// call (or with no iat) are refused from then on, for Options.RevokeTTL.
type Disconnect struct {
	Users []string `json:"users,omitempty"`
	Conns []string `json:"conns,omitempty"`
	// Reason is the close reason the sockets get: printable UTF-8, cut to
	// proto.MaxCloseReason bytes at a character boundary; empty is
	// "disconnected" (or "reconnect" with Reconnect).
	Reason    string `json:"reason,omitempty"`
	Reconnect bool   `json:"reconnect,omitempty"`
	// Revoke refuses from now on every token of Users whose iat is before
	// the call, or in the same second, or missing: a leaked token, a
	// logout everywhere, a ban. The client needs a token issued after the
	// call. It needs Users: with Conns only it is a bad_request.
	Revoke bool `json:"revoke,omitempty"`
}

// Check reports what is wrong with m as a bad_request *event.Error naming
// the field, or nil: a target, at most MaxUsers user ids a token may
// carry and MaxConns connection ids of the gateway's form, as a Message's,
// and a printable reason.
func (m *Disconnect) Check() error {
	if len(m.Users) == 0 && len(m.Conns) == 0 {
		return event.BadRequest("no target: give users or conns")
	}
	if m.Revoke && len(m.Users) == 0 {
		return event.BadRequest("revoke needs users: tokens are revoked by user")
	}
	if len(m.Users) > MaxUsers {
		return event.BadRequest("users names %d users, more than %d", len(m.Users), MaxUsers)
	}
	if len(m.Conns) > MaxConns {
		return event.BadRequest("conns names %d connections, more than %d", len(m.Conns), MaxConns)
	}
	if err := checkIDs(m.Users, m.Conns); err != nil {
		return err
	}
	if !proto.ValidReason(m.Reason) {
		return event.BadRequest("reason must be printable UTF-8")
	}
	return nil
}

// Disconnect checks m (Check's errors are bad_request) and publishes it
// on proto.Channel, which every gateway worker subscribes to in either
// fan-out mode: each closes the sockets it holds of m's targets. It is not
// recorded in the streams. It returns how many subscribers of the channel
// received it, the gateway workers (on a Redis Cluster only those
// subscribed through the node that took it, a lower bound); 0 means no
// worker listened, and then no socket was closed.
//
// A failure to reach Redis, or Redis's refusal (out of memory, a
// read-only replica), is an *event.Error with code unavailable (nothing
// was recorded or published); a reply lost after the command was sent is
// one with code timeout (it may have been); a revoke that Redis failed
// while it ran, one with code handler_error (some users may be revoked);
// a context that ends first, the context's error. A disconnect is safe
// to repeat.
func (d *Dispatcher) Disconnect(ctx context.Context, m Disconnect) (workers int, err error) {
	if err := m.Check(); err != nil {
		return 0, err
	}
	msg := proto.Disconnect{Users: uniq(m.Users), Conns: m.Conns, Reason: proto.TruncateReason(m.Reason), Reconnect: m.Reconnect}
	if m.Revoke {
		// Recorded before it is published: a worker that subscribes
		// after the publish, or misses it, loads it from the hash.
		msg.RevokeBefore = time.Now().UnixMilli()
		again := 0
		if msg.Reconnect {
			again = 1
		}
		args := make([]any, 0, 3+len(msg.Users))
		args = append(args, msg.RevokeBefore, d.revokeTTL.Milliseconds(), again)
		for _, u := range msg.Users {
			args = append(args, u)
		}
		if err := revokeScript.Run(ctx, d.pub.rdb, []string{proto.RevokedKey, proto.RevokedReconnectKey}, args...).Err(); err != nil {
			if failedInScript(err) {
				late.Mark(ctx)
				return 0, &event.Error{
					Code:    proto.CodeHandlerError,
					Message: "revoke failed inside Redis: some of its users may have been revoked",
					Err:     fmt.Errorf("disconnect: revoke: %w", err),
				}
			}
			if !unsent(err) && !refused(err) {
				late.Mark(ctx)
				err = &maybeSentError{err: err}
			}
			return 0, publishError(ctx, fmt.Errorf("disconnect: revoke: %w", err))
		}
		late.Mark(ctx) // the revocation holds, whatever comes of the publish
	}
	body := proto.AppendDisconnect(nil, &msg)
	n, err := d.pub.rdb.Publish(ctx, proto.Channel, body).Result()
	if err == nil || !unsent(err) && !refused(err) {
		late.Mark(ctx)
	}
	if err != nil {
		if !unsent(err) && !refused(err) {
			err = &maybeSentError{err: err}
		}
		return 0, publishError(ctx, fmt.Errorf("disconnect: %w", err))
	}
	return int(n), nil
}

// revokeScript records a revocation in KEYS[1] (proto.RevokedKey) and
// whether it asked the clients to reconnect in KEYS[2]
// (proto.RevokedReconnectKey, in the same slot): ARGV[1] is the moment
// (Unix ms), ARGV[2] the TTL (ms), ARGV[3] 1 to reconnect, the rest the
// users. Each user's field keeps the later of its value and the moment;
// when the moment wins, the user's reconnect mark is set to it or
// deleted. The fields older than the TTL, and the marks that no longer
// match their user's moment, are deleted (each call walks the hashes:
// revocations are rare), and both hashes expire a TTL after the last call,
// when every field would be stale.
//
// It is flagged (#!lua, a script that writes), so Redis refuses it whole,
// before it runs, when it could not write (out of memory with noeviction,
// a read-only replica): refused, not "may have run".
var revokeScript = redis.NewScript(`#!lua
local now, ttl, again = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
	local v = tonumber(all[i+1])
	if v == nil or v < now - ttl then redis.call('HDEL', KEYS[1], all[i]) end
end
for i = 4, #ARGV do
	local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
	if old == nil or old < now then
		redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
		if again then
			redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
		else
			redis.call('HDEL', KEYS[2], ARGV[i])
		end
	end
end
local marks = redis.call('HGETALL', KEYS[2])
for i = 1, #marks, 2 do
	if redis.call('HGET', KEYS[1], marks[i]) ~= marks[i+1] then redis.call('HDEL', KEYS[2], marks[i]) end
end
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 0
`)

// refused reports whether err is Redis's refusal of a command before it
// ran (an error reply not raised inside a script: OOM, READONLY,
// MASTERDOWN, LOADING): nothing was written or published.
func refused(err error) bool {
	_, ok := errors.AsType[redis.Error](err)
	return ok && !failedInScript(err)
}
