package streams

import (
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/proto"
)

// IsCluster reports whether rdb is a Redis Cluster client. On a cluster a
// script call may only touch keys of one slot: dispatches are split by
// partition (SplitUsers, Group) and every stream goes by its partition's
// run key; on one Redis one call carries any mix, and one run key,
// partition proto.BroadcastPartition's, serves every stream.
func IsCluster(rdb any) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// runKey returns the run key the scripts check for the streams of
// partition p.
func runKey(cluster bool, p int) string {
	if !cluster {
		p = proto.BroadcastPartition
	}
	return proto.RunKey(p)
}

// SplitUsers returns d split by its users' partitions, for a Redis
// Cluster: d itself when its users are all in one partition (or it names
// none), otherwise one dispatch per partition, in the order of each
// partition's first user, users in their order, each with d's Except and
// Transient; the first also carries
// d's connections and broadcast flag, and, with connections, the users of
// the other parts added to d's SkipUsers, so that a socket named in both
// ways gets the event through its user only. Each part is recorded and
// published on its own: a socket gets its user's part once, and positions
// name only its own user, so the split changes nothing a socket sees.
func SplitUsers(d *proto.Dispatch) []*proto.Dispatch {
	if len(d.Users) < 2 || usersPartition(d.Users) != mixedPartition {
		return []*proto.Dispatch{d}
	}
	order := make([]int, 0, 4)
	var byPart [proto.Partitions][]string
	for _, u := range d.Users {
		p := proto.PartitionOf(u)
		if byPart[p] == nil {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], u)
	}
	out := make([]*proto.Dispatch, len(order))
	for i, p := range order {
		part := &proto.Dispatch{Event: d.Event, Args: d.Args, Users: byPart[p], Transient: d.Transient, Except: d.Except}
		if i == 0 {
			part.Conns, part.Broadcast, part.SkipUsers = d.Conns, d.Broadcast, d.SkipUsers
		}
		out[i] = part
	}
	if len(d.Conns) > 0 {
		skip := slices.Clone(d.SkipUsers)
		for _, part := range out[1:] {
			skip = append(skip, part.Users...)
		}
		out[0].SkipUsers = skip
	}
	return out
}

// GroupUsers returns users reordered so that the users of one partition
// are together, partitions in the order of their first user: the order in
// which a Redis Cluster records a dispatch split by SplitUsers and its
// parts chunked.
func GroupUsers(users []string) []string {
	if len(users) < 2 || usersPartition(users) != mixedPartition {
		return users
	}
	parts := SplitUsers(&proto.Dispatch{Users: users})
	out := make([]string, 0, len(users))
	for _, p := range parts {
		out = append(out, p.Users...)
	}
	return out
}

// CallGroup is the units of one script call on a Redis Cluster: all of
// one partition, and Index their places in the units given to Group.
type CallGroup struct {
	Partition int
	Units     []*Unit
	Index     []int
}

// Group sorts units into script calls for a Redis Cluster: one per
// partition, in the order of each partition's first unit, units in their
// order. A unit of no partition (a transient dispatch on the shared
// channel, which any node publishes cluster-wide) joins the first group,
// or makes one of partition proto.BroadcastPartition. It panics on a
// Mixed unit: split its dispatch with SplitUsers first.
func Group(units []*Unit) []CallGroup {
	var groups []CallGroup
	at := [proto.Partitions]int{}
	for i := range at {
		at[i] = -1
	}
	var loose []int
	for i, u := range units {
		p := u.part
		switch {
		case p == mixedPartition:
			panic("streams: a unit spanning several partitions in a Redis Cluster call")
		case p == anyPartition:
			loose = append(loose, i)
			continue
		}
		if at[p] < 0 {
			at[p] = len(groups)
			groups = append(groups, CallGroup{Partition: p})
		}
		g := &groups[at[p]]
		g.Units, g.Index = append(g.Units, u), append(g.Index, i)
	}
	if len(loose) == 0 {
		return groups
	}
	if len(groups) == 0 {
		groups = append(groups, CallGroup{Partition: proto.BroadcastPartition})
	}
	// Into the first group, each in its place among that group's units.
	g := &groups[0]
	for _, i := range loose {
		j := 0
		for j < len(g.Index) && g.Index[j] < i {
			j++
		}
		g.Index = append(g.Index[:j], append([]int{i}, g.Index[j:]...)...)
		g.Units = append(g.Units[:j], append([]*Unit{units[i]}, g.Units[j:]...)...)
	}
	return groups
}

// Targets returns how many positions the unit's script call returns for
// it: the users or broadcast stream it records, 0 when transient.
func (u *Unit) Targets() int { return len(u.keys) / 2 }
