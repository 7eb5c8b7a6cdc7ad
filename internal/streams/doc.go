// Package streams owns the recovery streams in Redis (docs/protocol.md
// section 6): the scripts that write them (handlers-svc) and read them (the
// gateway), and the run id every connection records. Key names are the
// contract's (proto.UserStreamKey and the others).
//
// A stream holds the recoverable events of one user, or the broadcasts:
// each entry's ID is "<ms>-<offset>", offsets contiguous within an epoch,
// fields e (event) and a (args JSON). Beside it a meta hash holds the epoch
// (e), the top offset (s), the time of the top entry (t) and the run of the
// Redis server that wrote it (r). A stream written on another run, or
// whose meta is gone, starts over in a new epoch: a restarted or failed-over
// Redis that lost its last writes can never hand out an offset a client has
// already seen with other content.
//
// Both scripts are atomic: the write appends to every target's stream and
// publishes, in one step, so stored order is publish order.
//
// On a Redis Cluster (IsCluster) a script may only touch the keys of one
// slot. A user's keys and channel carry the hash tag of the user's
// partition (proto.PartitionOf), so they share one; a dispatch is split by
// partition (SplitUsers, Group) and each part written by its own call
// (PartitionCall), checked against that partition's run key, which
// OnConnect sets on every node for the partitions it serves.
package streams
