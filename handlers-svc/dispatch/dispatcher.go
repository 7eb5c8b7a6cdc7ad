package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// Dispatcher records dispatches in the recovery streams and publishes them
// on proto.Channel, or, with Options.PerUser, a dispatch to users on each
// user's channel (docs/protocol.md sections 4 and 6).
type Dispatcher struct {
	// pub writes the publishes: on a Redis Cluster, those whose master
	// is not known (publisherOf).
	pub publisher
	// masters holds, on a Redis Cluster, a publisher per master (by
	// address, string to *publisher), so that a stalled master holds up
	// the dispatches to its own partitions only: one pipeline in flight
	// for the whole cluster, whose callers wake once every node has
	// answered, held up every dispatch behind it until their deadline.
	masters sync.Map
	record  bool          // Window > 0: dispatches to users and broadcasts are recorded
	window  time.Duration // how long recorded events are kept
	ttl     time.Duration // how long a stream's meta outlives its last event
	// revokeTTL is how long a revocation is kept in proto.RevokedKey.
	revokeTTL time.Duration
	// perUser publishes a dispatch to users (and no connection) on each
	// user's channel (FANOUT_MODE=per_user).
	perUser bool
	// cluster: rdb is a Redis Cluster client; a dispatch is recorded and
	// published by one script call per partition (cluster.go).
	cluster bool
	log     *zap.Logger // nil: outages are not logged here
	// down has a bit set for each part of Redis whose last command
	// failed to reach it (outageBit, Dispatcher.roomsBit): on a Redis Cluster one
	// per partition, whose masters fail apart, and one for the room keys;
	// on one Redis, bit 0 stands for all of it.
	down atomic.Uint32

	// idem keeps the records of idempotency keys (Message.IdempotencyKey).
	idem *idem.Store

	unheard atomic.Uint64 // publishes on the shared channel no subscriber received
	deaf    atomic.Bool   // the last publish reached no subscriber
}

// Options tune a Dispatcher.
type Options struct {
	// Window is how long recorded events are kept for recovery
	// (HISTORY_WINDOW): DefaultWindow if 0, as the services default to;
	// otherwise from 1s to proto.MaxHistoryWindow (24h), HISTORY_WINDOW's
	// bounds (Check). NoHistory (any negative value) turns recording off,
	// and every dispatch is transient, as in v1: a service whose
	// HISTORY_WINDOW is 0 passes NoHistory. Give it the services' value:
	// every writer of a stream trims it to its own window.
	Window time.Duration
	// MetaTTL is how long a stream's epoch and top offset are kept after
	// its last event or read (DefaultMetaTTL if 0). A client that comes
	// back later starts over (recovered false).
	MetaTTL time.Duration
	// PerUser publishes a dispatch to users on each target user's own
	// channel (proto.UserChannel), one message per user naming that user
	// only, instead of one message on proto.Channel for all: gateways in
	// FANOUT_MODE=per_user receive only the dispatches of users they hold
	// a socket of. Broadcasts, dispatches to connections, and the message
	// of a dispatch to users and connections at once that names the
	// connections (so that a socket named both ways still gets the event
	// once; its skip_users covers the users of the dispatch's other
	// messages) stay on proto.Channel.
	PerUser bool
	// RevokeTTL is how long a revocation (Disconnect.Revoke) is kept in
	// Redis: DefaultRevokeTTL if 0. Set it to the longest lifetime of your
	// tokens: a token revoked longer ago than RevokeTTL is accepted again
	// until its exp. The gateway's GATEWAY_REVOKE_TTL should be the same.
	RevokeTTL time.Duration
}

// DefaultRevokeTTL is the RevokeTTL of Options that leave it 0.
const DefaultRevokeTTL = 24 * time.Hour

// Check returns why New would refuse o, or nil: a positive Window outside
// HISTORY_WINDOW's bounds (under a second, events would expire before a
// client is back; over proto.MaxHistoryWindow, they would outlive their
// stream's epoch and top offset), or a MetaTTL shorter than the Window. A
// backend that takes them from its configuration checks them with Check
// at start.
func (o Options) Check() error {
	if o.Window > 0 {
		if proto.CheckHistoryWindow(o.Window) != nil {
			return fmt.Errorf("dispatch: Options.Window must be 0 (DefaultWindow), negative (NoHistory: recording off) or from 1s to %s, got %s",
				proto.MaxHistoryWindow, o.Window)
		}
	}
	w := o.Window
	if w == 0 {
		w = DefaultWindow
	}
	if o.RevokeTTL < 0 {
		return fmt.Errorf("dispatch: Options.RevokeTTL must be 0 (DefaultRevokeTTL) or positive, got %s", o.RevokeTTL)
	}
	if o.MetaTTL > 0 && w > 0 && o.MetaTTL < w {
		return fmt.Errorf("dispatch: Options.MetaTTL %s is shorter than the window %s: a stream's epoch would expire before its events", o.MetaTTL, w)
	}
	return nil
}

// OnConnect is the go-redis OnConnect hook (Options.OnConnect, or
// ClusterOptions.OnConnect) of every client given to New: it records the
// run of the Redis server each new connection reaches, so that a stream
// written before a restart or a failover, which may have lost its last
// events, is continued in a new epoch (recovered:false for the devices
// that resume), never at positions clients have already seen
// (docs/protocol.md section 6). A client without it dispatches all the
// same, but a restart's lost events can then go unnoticed until another
// client of the streams (handlers-svc, a gateway) connects.
func OnConnect(ctx context.Context, cn *redis.Conn) error { return streams.OnConnect(ctx, cn) }

// DefaultWindow is the Window of Options that leave it 0: the services'
// default HISTORY_WINDOW.
const DefaultWindow = proto.DefaultHistoryWindow

// NoHistory, as Options.Window, turns recording off: dispatches are
// transient, as in v1 (HISTORY_WINDOW=0 on the services).
const NoHistory time.Duration = -1

// DefaultMetaTTL is the lifetime of a stream's meta after its last use.
const DefaultMetaTTL = streams.MetaTTL

var (
	_ event.Dispatcher = (*Dispatcher)(nil)
	_ event.Batcher    = (*Dispatcher)(nil)
)

// New returns a Dispatcher that publishes with rdb. The caller owns rdb and
// closes it after the last dispatch. rdb should not retry commands
// (MaxRetries -1): a publish repeated after a lost reply is delivered twice;
// it should have ContextTimeoutEnabled set (below), and OnConnect as its
// OnConnect hook. New takes rdb whatever its options: NewChecked refuses
// one that misses any of these (CheckClient), and a service should build
// its Dispatcher with it.
// rdb is a single-server client (or a failover one), or a Redis Cluster
// client (*redis.ClusterClient): there a dispatch to users of several
// partitions is recorded and published by one script call per partition,
// so it may be delivered in some partitions and fail in others
// (ErrPartlyDelivered; docs/operations.md, "Redis Cluster"), and per-user
// mode publishes with SPUBLISH. With ContextTimeoutEnabled set on rdb, a
// round trip to Redis ends by the last deadline of the dispatches it
// carries; without it, only by rdb's own timeouts.
//
// New panics when opts fail Check, as http.ServeMux.Handle does on a bad
// pattern: such options are a programming error, which a panic at start
// shows at once, where a Dispatcher that took them would lose events
// quietly.
func New(rdb redis.UniversalClient, opts Options) *Dispatcher {
	if err := opts.Check(); err != nil {
		panic(err)
	}
	if opts.MetaTTL <= 0 {
		opts.MetaTTL = DefaultMetaTTL
	}
	if opts.RevokeTTL == 0 {
		opts.RevokeTTL = DefaultRevokeTTL
	}
	switch {
	case opts.Window == 0:
		opts.Window = DefaultWindow // a Window forgotten records, as the services do by default
	case opts.Window < 0:
		opts.Window = 0
	}
	return &Dispatcher{pub: newPublisher(rdb), record: opts.Window > 0, window: opts.Window, ttl: opts.MetaTTL,
		perUser: opts.PerUser, cluster: streams.IsCluster(rdb), revokeTTL: opts.RevokeTTL, idem: idem.New(rdb, IdempotencyTTL)}
}

// LogOutages makes d log when Redis stops taking its dispatches and when it
// takes them again, once per change rather than once per failed dispatch
// (each of those still returns unavailable to its handler). It returns d;
// call it before the first dispatch.
func (d *Dispatcher) LogOutages(log *zap.Logger) *Dispatcher {
	d.log = log
	return d
}

// observe records the outcome of one publish to the parts of Redis in
// bits (outageBit) and logs a change of state.
func (d *Dispatcher) observe(ctx context.Context, err error, bits uint32) error {
	err = publishError(ctx, err)
	switch {
	case err == nil, failedInScript(err): // Redis answered
		d.reached(bits)
	case ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded): // unavailable, not the handler running out of time
		d.unreachable(bits, err)
	}
	return err
}

// Outages are logged once per change of state of each part of Redis, so
// that with one master of a cluster down, the dispatches that still
// succeed on the others do not log "reachable again" between each two that
// fail.

// clusterRoomsBit is the bit of down for a Redis Cluster's room keys, which are
// in no partition.
const clusterRoomsBit = 1 << proto.Partitions

// outageBit returns the bit of down for partition p's keys.
func (d *Dispatcher) outageBit(p int) uint32 {
	if !d.cluster {
		return 1
	}
	return 1 << p
}

// reached clears bits of down and logs the parts that were down.
func (d *Dispatcher) reached(bits uint32) {
	if was := d.down.And(^bits) & bits; was != 0 && d.log != nil {
		d.log.Info("redis reachable again: dispatches resume", d.outageFields(was)...)
	}
}

// unreachable sets bits of down and logs, with err, the parts that were
// up.
func (d *Dispatcher) unreachable(bits uint32, err error) {
	if now := bits &^ d.down.Or(bits); now != 0 && d.log != nil {
		d.log.Error("redis unreachable: dispatches fail with unavailable until it is back", append(d.outageFields(now), zap.Error(err))...)
	}
}

// outageFields names the parts of a Redis Cluster in bits: none on one
// Redis.
func (d *Dispatcher) outageFields(bits uint32) []zap.Field {
	if !d.cluster {
		return nil
	}
	var parts []int
	for p := range proto.Partitions {
		if bits&(1<<p) != 0 {
			parts = append(parts, p)
		}
	}
	fields := []zap.Field{zap.Ints("partitions", parts)}
	if bits&clusterRoomsBit != 0 {
		fields = append(fields, zap.Bool("rooms", true))
	}
	return fields
}

// ToUsers publishes the event for every device of each of users. Many
// users are recorded and published in several messages (of at most
// 128 users each), in one script call on one Redis, one per partition on
// a Redis Cluster. It is not all or none: on a cluster one partition's
// call may run while another's fails, and on either Redis may fail one
// message while the script runs it (WRONGTYPE on a key something else
// overwrote) and run the others. Such an error wraps ErrPartlyDelivered;
// ToUsers returns no positions, so a caller that must finish a partial
// delivery without repeating it uses Dispatch, whose error comes with the
// positions of who got it. users are bounded as a Message's are: at most
// MaxUsers ids a token may carry (Check), else a bad_request
// *event.Error and nothing is published.
func (d *Dispatcher) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if err := checkUsers(name, users); err != nil {
		return err
	}
	return d.toUsers(ctx, users, name, args, d.record, nil)
}

// toUsers is ToUsers without the bounds of users: for the members of
// rooms, each of at most proto.MaxRoomMembers admitted by Join. record
// false publishes it transient (Transient); except are the connections
// it leaves out (Except).
func (d *Dispatcher) toUsers(ctx context.Context, users []string, name string, args any, record bool, except []string) error {
	if len(users) == 0 {
		return checkOnly(name, args)
	}
	units, err := d.userUnits(&proto.Dispatch{Event: name, Users: users, Except: except}, args, record)
	if err != nil {
		return err
	}
	_, err = d.publish(ctx, units...)
	return err
}

// ToConns publishes the event for each of conns: at most MaxConns
// connection ids of the gateway's form (Check), else a bad_request
// *event.Error and nothing is published.
func (d *Dispatcher) ToConns(ctx context.Context, conns []string, name string, args any) error {
	return d.toConns(ctx, conns, name, args, nil)
}

// toConns is ToConns leaving out the connections except (Except).
func (d *Dispatcher) toConns(ctx context.Context, conns []string, name string, args any, except []string) error {
	if err := checkConns(name, conns); err != nil {
		return err
	}
	if len(conns) == 0 {
		return checkOnly(name, args)
	}
	u, err := d.encode(&proto.Dispatch{Event: name, Conns: conns, Except: except}, args, false)
	if err != nil {
		return err
	}
	_, err = d.publish(ctx, u)
	return err
}

// Broadcast publishes the event for every socket of every gateway worker.
func (d *Dispatcher) Broadcast(ctx context.Context, name string, args any) error {
	return d.broadcast(ctx, name, args, d.record, nil)
}

// broadcast is Broadcast, transient with record false, leaving out the
// connections except (Except).
func (d *Dispatcher) broadcast(ctx context.Context, name string, args any, record bool, except []string) error {
	u, err := d.encode(&proto.Dispatch{Event: name, Broadcast: true, Except: except}, args, record)
	if err != nil {
		return err
	}
	_, err = d.publish(ctx, u)
	return err
}

// Batch runs fn with a Dispatcher that collects its dispatches, then
// records and publishes them in one script call: every gateway worker gets
// them in order; a failure to reach Redis publishes none of them, but a
// dispatch Redis fails while the script runs it fails alone, the others
// published (ErrPartlyDelivered). The call may share a
// pipeline with other callers' publishes; nothing comes between its own.
// On a Redis Cluster that holds per partition only (one script call
// each): users of different partitions may get their events in either
// order, and a batch that fails in one partition may be published in the
// others.
func (d *Dispatcher) Batch(ctx context.Context, fn func(event.Dispatcher) error) error {
	b := batch{d: d, units: new(collected), record: d.record}
	err := fn(&b)
	units := b.units.close()
	if err != nil || len(units) == 0 {
		return err
	}
	_, err = d.publish(ctx, units...)
	return err
}

// collected is what a batch and its views (Transient, Except) have
// collected. A handler may dispatch from several goroutines, as with any
// Dispatcher: the list is locked.
type collected struct {
	mu     sync.Mutex
	units  []*streams.Unit
	closed bool // Batch has taken them: fn returned
}

// add appends units, or refuses them once Batch has taken the list: a
// dispatch made after fn returned would be published by no one.
func (c *collected) add(name string, units ...*streams.Unit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("dispatch %s: its batch has ended (the function given to Batch returned): nothing is published", name)
	}
	c.units = append(c.units, units...)
	return nil
}

// close ends the collection and returns what it holds.
func (c *collected) close() []*streams.Unit {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.units
}

// batch collects encoded dispatches for Batch; it is safe for concurrent
// use, as every Dispatcher is.
type batch struct {
	d *Dispatcher
	// units is shared with the batch's views (Transient, Except).
	units *collected
	// record: its dispatches to users and broadcasts are recorded.
	record bool
	// except: the connections its dispatches leave out (Except).
	except []string
}

func (b *batch) ToUsers(ctx context.Context, users []string, name string, args any) error {
	if err := checkUsers(name, users); err != nil {
		return err
	}
	return b.toUsers(ctx, users, name, args)
}

func (b *batch) toUsers(_ context.Context, users []string, name string, args any) error {
	if len(users) == 0 {
		return checkOnly(name, args)
	}
	if err := checkExceptOf(name, b.except); err != nil {
		return err
	}
	units, err := b.d.userUnits(&proto.Dispatch{Event: name, Users: users, Except: b.except}, args, b.record)
	if err != nil {
		return err
	}
	return b.units.add(name, units...)
}

func (b *batch) ToConns(_ context.Context, conns []string, name string, args any) error {
	if err := checkConns(name, conns); err != nil {
		return err
	}
	if len(conns) == 0 {
		return checkOnly(name, args)
	}
	return b.add(&proto.Dispatch{Event: name, Conns: conns}, args, false)
}

func (b *batch) Broadcast(_ context.Context, name string, args any) error {
	return b.add(&proto.Dispatch{Event: name, Broadcast: true}, args, b.record)
}

func (b *batch) add(msg *proto.Dispatch, args any, record bool) error {
	if err := checkExceptOf(msg.Event, b.except); err != nil {
		return err
	}
	msg.Except = b.except
	u, err := b.d.encode(msg, args, record)
	if err != nil {
		return err
	}
	return b.units.add(msg.Event, u)
}

// checkUsers refuses, with a bad_request *event.Error, more than MaxUsers
// users or an id no token may carry, as Check does for a Message: such a
// user never connects, so its events would fill a stream no device
// reads, and one call naming very many would hold Redis.
func checkUsers(name string, users []string) error {
	if len(users) > MaxUsers {
		return event.BadRequest("dispatch %s: %d users, more than %d", name, len(users), MaxUsers)
	}
	for i, u := range users {
		if !ValidUser(u) {
			return event.BadRequest("dispatch %s: users[%d] must be a user id of 1 to %d bytes of printable UTF-8", name, i, MaxUserLen)
		}
	}
	return nil
}

// checkConns refuses, with a bad_request *event.Error, more than MaxConns
// connections or an id the gateway never makes, as Check does.
func checkConns(name string, conns []string) error {
	if len(conns) > MaxConns {
		return event.BadRequest("dispatch %s: %d connections, more than %d", name, len(conns), MaxConns)
	}
	for i, c := range conns {
		if !validConn(c) {
			return event.BadRequest("dispatch %s: conns[%d] must be a connection id of 1 to %d bytes of printable ASCII", name, i, MaxConnLen)
		}
	}
	return nil
}

// checkRooms refuses, with a bad_request *event.Error, more than MaxRooms
// rooms or an invalid room name, as Check does.
func checkRooms(name string, rooms []string) error {
	if len(rooms) > MaxRooms {
		return event.BadRequest("dispatch %s: %d rooms, more than %d", name, len(rooms), MaxRooms)
	}
	for _, room := range rooms {
		if err := checkRoomName(room); err != nil {
			return err
		}
	}
	return nil
}

// checkOnly reports the programming errors a dispatch to nobody would have
// had, so they do not hide until the list is non-empty.
func checkOnly(name string, args any) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := event.EncodeArgs(args); err != nil {
		return fmt.Errorf("dispatch %s: %w", name, err)
	}
	return nil
}

// checkName refuses an event name no dispatch may have: an invalid one, or
// one of the gateway's own events (docs/protocol.md section 2).
func checkName(name string) error {
	if !proto.ValidEventName(name) {
		return fmt.Errorf("dispatch: invalid event name %q", name)
	}
	if proto.Reserved(name) {
		return fmt.Errorf("dispatch: event name %q is the gateway's own", name)
	}
	return nil
}

// encode checks msg's event name and args and returns its unit of a
// publish script call. A user named twice is recorded once. Its errors are
// programming errors, not outages, but for args over
// proto.MaxDispatchArgs: bad_request, the answer to the request that asked
// for them. record false publishes it transient: in no stream, without
// positions (a dispatch to connections only is transient whatever it is).
func (d *Dispatcher) encode(msg *proto.Dispatch, args any, record bool) (*streams.Unit, error) {
	if err := checkName(msg.Event); err != nil {
		return nil, err
	}
	raw, err := event.EncodeArgs(args)
	if err != nil {
		return nil, fmt.Errorf("dispatch %s: %w", msg.Event, err)
	}
	if len(raw) > proto.MaxDispatchArgs {
		return nil, event.BadRequest("dispatch %s: its args are %d bytes, more than the %d allowed", msg.Event, len(raw), proto.MaxDispatchArgs)
	}
	msg.Args = raw
	// Not recorded though this dispatcher records: transient by choice,
	// which the body says, so that no worker takes it for a publisher
	// that records nothing (docs/protocol.md section 4).
	msg.Transient = d.record && !record
	msg.Users = uniq(msg.Users)
	if d.perUser && len(msg.Users) > 0 && len(msg.Conns) == 0 && !msg.Broadcast {
		u := streams.NewPerUserUnit(msg, record)
		if d.cluster {
			u.Shard()
		}
		return u, nil
	}
	return streams.NewUnit(msg, record), nil
}

// uniq returns users without repeats, in order; it copies only when there
// are some.
func uniq(users []string) []string {
	if len(users) > 16 {
		seen := make(map[string]struct{}, len(users))
		var out []string
		for i, u := range users {
			if _, dup := seen[u]; dup {
				if out == nil {
					out = slices.Clone(users[:i])
				}
				continue
			}
			seen[u] = struct{}{}
			if out != nil {
				out = append(out, u)
			}
		}
		if out == nil {
			return users
		}
		return out
	}
	for i := 1; i < len(users); i++ {
		if slices.Contains(users[:i], users[i]) {
			out := slices.Clone(users[:i])
			for _, u := range users[i+1:] {
				if !slices.Contains(out, u) {
					out = append(out, u)
				}
			}
			return out
		}
	}
	return users
}

// publish records and publishes units in one script call using ctx, and
// returns the positions the script assigned, in target order.
func (d *Dispatcher) publish(ctx context.Context, units ...*streams.Unit) ([]string, error) {
	return d.publishLate(ctx, nil, units...)
}

// publishLate is publish, and when it returns a context's error and after
// is not nil, after gets the outcome of the publish (late.Outcome, and
// with late.Done its positions) once it is known: maybe before
// publishLate returns, maybe later on the goroutine of the flush that
// carried it, so after must not block. It gets late.Unknown, or nothing,
// when the outcome cannot be known.
func (d *Dispatcher) publishLate(ctx context.Context, after func([]string, late.Outcome), units ...*streams.Unit) (pos []string, err error) {
	defer func() { markEffects(ctx, err) }()
	if d.cluster {
		return d.publishCluster(ctx, units, after) // observes each partition
	}
	keys, args := streams.PublishCall(units, d.window, d.ttl)
	return d.publishCall(ctx, &d.pub, keys, args, sharedUnit(units), 1, after)
}

// markEffects tells the request's late.Effects, if ctx carries one, that
// a publish whose result is err may have been delivered: any but one
// that surely did not run (its error wraps ErrNotSent, or is a refusal or
// a failure to connect, outcomeOf's NotRun).
func markEffects(ctx context.Context, err error) {
	if err == nil || (!errors.Is(err, ErrNotSent) && outcomeOf(err) != late.NotRun) {
		late.Mark(ctx)
	}
}

// counted reports whether a call that ended with err has its unheard
// publishes counted: it succeeded, or the script ran and failed some of
// its units (*unitError).
func counted(err error) bool {
	_, unit := errors.AsType[*unitError](err)
	return err == nil || unit
}

// publishCall runs one call of the publish script with keys and args
// through pub, as publishLate does; it counts the publishes of shared, if not nil, that
// no subscriber received, and observes the outcome for the parts of
// Redis in bits.
func (d *Dispatcher) publishCall(ctx context.Context, pub *publisher, keys []string, args []any, shared *streams.Unit, bits uint32,
	after func([]string, late.Outcome)) ([]string, error) {
	var onLate func([]string, int, error)
	if after != nil {
		onLate = func(pos []string, unheard int, err error) {
			if counted(err) {
				d.hearCall(shared, unheard)
			}
			after(pos, outcomeOf(err))
		}
	}
	pos, unheard, err := pub.publishLate(ctx, keys, args, onLate)
	if counted(err) {
		d.hearCall(shared, unheard)
	}
	perr := d.observe(ctx, err, bits)
	if _, inFlight := errors.AsType[*inFlightError](err); after != nil && !inFlight && contextError(perr) {
		after(nil, outcomeOf(err)) // known already, though ctx ended
	}
	if u, ok := errors.AsType[*unitError](err); ok && u.ran {
		perr = partlyDelivered(perr) // pos holds the positions of the units that ran
	}
	return pos, perr
}

// outcomeOf returns the outcome of a publish whose result is err: done,
// not run (never written, or refused by Redis, which runs no part of a
// call it refuses, or no connection to be had), or unknown.
//
// A dispatch to several partitions of a Redis Cluster some of which ran,
// or may have, is unknown whatever the call that failed says: its error
// wraps ErrPartlyDelivered, or is a timeout *event.Error (clusterResult),
// though its cause may be one master's refusal (a redis.Error, OOM say)
// that alone would read as not run.
func outcomeOf(err error) late.Outcome {
	if err == nil {
		return late.Done
	}
	if errors.Is(err, ErrPartlyDelivered) {
		return late.Unknown
	}
	if e, ok := errors.AsType[*event.Error](err); ok && e.Code == proto.CodeTimeout {
		return late.Unknown // timeout says it may have been delivered
	}
	if _, ok := errors.AsType[*notSentError](err); ok {
		return late.NotRun
	}
	if _, ok := errors.AsType[redis.Error](err); ok && !failedInScript(err) {
		return late.NotRun // refused before it ran
	}
	if e, ok := errors.AsType[*unitError](err); ok && !e.delivered {
		return late.NotRun // failed in the script before it wrote any of it
	}
	if unsent(err) {
		return late.NotRun
	}
	return late.Unknown
}

// contextError reports whether err is a context's: the dispatch ran out
// of time, or its caller gave up.
func contextError(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// sharedUnit returns the first of units published on the shared channel,
// or nil when all are published on users' channels (per-user mode): only
// the shared channel says whether a gateway worker listens, since a user's
// channel no one hears only means the user is offline.
func sharedUnit(units []*streams.Unit) *streams.Unit {
	for _, u := range units {
		if !u.PerUser() {
			return u
		}
	}
	return nil
}

// Unheard returns how many publishes on the shared channel reached no
// subscriber since d was made: dispatches that no gateway worker
// received, so no socket did (in per-user mode, publishes on users'
// channels are not counted: no subscriber there is a user offline) (a recorded one is kept in its streams for
// a resume; a transient one is lost).
func (d *Dispatcher) Unheard() uint64 { return d.unheard.Load() }

// hearCall counts the unheard publishes of a call whose publish on the
// shared channel, if any, is shared's. A call with none (a dispatch to
// users in per-user mode) has its unheard counted too when it is more
// than 0: they are those of the calls merged behind it into one script
// call (mergeCalls), whose own results say uncounted, and would otherwise
// be counted by no one. Not on a cluster, whose counts are the node's only
// (see cluster.go).
func (d *Dispatcher) hearCall(shared *streams.Unit, unheard int) {
	switch {
	case shared != nil:
		d.hear(shared.Event(), unheard)
	case unheard > 0 && !d.cluster:
		d.hear("", unheard) // another caller's event
	}
}

// hear counts the publishes of one call that no subscriber received and
// logs when publishes stop reaching subscribers and when they reach them
// again, once per change (a gateway fleet that is down would otherwise
// log once per dispatch).
func (d *Dispatcher) hear(event string, unheard int) {
	if unheard == uncounted {
		return // the first call of its merged script call counted them
	}
	if unheard == 0 {
		if d.deaf.Swap(false) && d.log != nil {
			d.log.Info("dispatches reach gateway workers again", zap.Uint64("unheard_total", d.unheard.Load()))
		}
		return
	}
	total := d.unheard.Add(uint64(unheard))
	if !d.deaf.Swap(true) && d.log != nil {
		d.log.Warn("a dispatch reached no gateway worker: no socket got it now (a recorded one waits in its streams for a resume)",
			zap.String("event", event), zap.Int("unheard", unheard), zap.Uint64("unheard_total", total))
	}
}

// publishError turns a failure to reach Redis into an *event.Error with
// code unavailable wrapping the cause (nothing was published), or with
// code timeout when Redis may have run the call but did not answer
// (maybeSentError), unless ctx itself ended: a call never written (or
// refused before it ran) is then notSent's error, wrapping ErrNotSent
// and the context's; one that was, or may have been, written is the
// context's error (so a handler that ran out of time reports timeout),
// or, canceled, a timeout *event.Error wrapping context.Canceled, since
// it may still run.
func publishError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if outcomeOf(err) == late.NotRun {
			return notSent(ctxErr)
		}
		if errors.Is(ctxErr, context.Canceled) {
			// A bare context.Canceled reads as unavailable (event.WireError),
			// which says nothing was delivered and a retry is safe; but a
			// call canceled once written may still run: timeout, as a
			// deadline's, still context.Canceled to errors.Is.
			return &event.Error{
				Code:    proto.CodeTimeout,
				Message: "dispatch canceled while in flight: it may have been delivered",
				Err:     fmt.Errorf("publish %s: %w", proto.Channel, ctxErr),
			}
		}
		return fmt.Errorf("publish %s: %w", proto.Channel, ctxErr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The round trip outlasted the callers' deadline (see flush); ctx
		// ends at the same instant, if it has not yet.
		return fmt.Errorf("publish %s: %w", proto.Channel, err)
	}
	if _, maybe := errors.AsType[*maybeSentError](err); maybe {
		// Redis may have run it: not unavailable, which says nothing was
		// delivered and a retry is safe, but timeout, which says it may
		// have been (docs/protocol.md sections 2 and 7).
		return &event.Error{
			Code:    proto.CodeTimeout,
			Message: "dispatch outcome unknown: Redis did not answer, it may have been delivered",
			Err:     fmt.Errorf("publish %s: %w", proto.Channel, err),
		}
	}
	if e, ok := errors.AsType[*unitError](err); ok && !e.delivered {
		// Not unavailable, which says Redis could not be reached, though
		// nothing was delivered (NotDelivered): Redis ran the script, and
		// a retry fails the same way until the key is mended.
		return &event.Error{
			Code:    proto.CodeHandlerError,
			Message: "dispatch failed inside Redis before any of it was recorded or delivered",
			Err:     fmt.Errorf("publish %s: %w", proto.Channel, err),
		}
	}
	if failedInScript(err) {
		// Not unavailable either: the writes before the failing line
		// stand (docs/protocol.md section 7, 500).
		return &event.Error{
			Code:    proto.CodeHandlerError,
			Message: "dispatch failed inside Redis: some of its events may have been recorded and delivered",
			Err:     fmt.Errorf("publish %s: %w", proto.Channel, err),
		}
	}
	return &event.Error{
		Code:    proto.CodeUnavailable,
		Message: "dispatch unavailable",
		Err:     fmt.Errorf("publish %s: %w", proto.Channel, err),
	}
}

// failedInScript reports whether err is an error Redis raised while it
// ran the publish script, as its text says ("@user_script:<line>"), or
// while it ran one of the call's units (unitError), such as WRONGTYPE on
// a stream key something else overwrote, rather than a refusal before it
// ran (OOM, NOSCRIPT, READONLY, a cluster's MOVED): Redis does not undo a
// script's writes, so the events recorded before that line stand, and the
// gateways heal them into their sockets.
func failedInScript(err error) bool {
	if _, ok := errors.AsType[*unitError](err); ok {
		return true
	}
	re, ok := errors.AsType[redis.Error](err)
	return ok && strings.Contains(re.Error(), "@user_script")
}
