package proto_test

import (
	"strconv"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// TestPartitionTagsBalanced: each partition's tag lands in the middle half
// of its own 1/Partitions of the slots, so masters holding contiguous slot
// ranges get partitions in proportion to their slots; the tags differ.
func TestPartitionTagsBalanced(t *testing.T) {
	w := proto.ClusterSlots / proto.Partitions
	seen := map[string]bool{}
	for p := range proto.Partitions {
		tag := proto.PartitionTag(p)
		if seen[tag] {
			t.Fatalf("tag %q twice", tag)
		}
		seen[tag] = true
		slot := proto.Slot("{" + tag + "}")
		if lo, hi := p*w+w/4, (p+1)*w-w/4; slot < lo || slot >= hi {
			t.Errorf("partition %d: tag %q is in slot %d, want [%d, %d)", p, tag, slot, lo, hi)
		}
	}
	// Three masters, as redis-cli --cluster create splits the slots.
	owners := [3]int{}
	for p := range proto.Partitions {
		owners[min(proto.Slot(proto.RunKey(p))*3/proto.ClusterSlots, 2)]++
	}
	for i, n := range owners {
		if n < 5 || n > 6 {
			t.Errorf("master %d of 3 holds %d partitions of %d", i, n, proto.Partitions)
		}
	}
}

// TestSlot: Redis Cluster's slots of known keys (CLUSTER KEYSLOT), hash
// tags included.
func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		"foo":           12182,
		"{user1000}.a":  3443,
		"{user1000}.b":  3443,
		"0":             13907,
		"{}a":           proto.Slot("{}a"), // an empty tag: the whole key
		"a{b":           proto.Slot("a{b"),
		"switchboard":   proto.Slot("switchboard"),
		"sb:{0}:u:x:s":  13907,
		"sb:{0}:u:{x}:": 13907,
	} {
		if got := proto.Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if proto.Slot("{}a") == proto.Slot("a") {
		t.Error("an empty hash tag was taken for a tag")
	}
}

// TestUserKeysShareASlot: a user's stream, meta and channel share the slot
// of the user's partition's run key, whatever the user id holds.
func TestUserKeysShareASlot(t *testing.T) {
	counts := make([]int, proto.Partitions)
	for i := range 1600 {
		u := "user-" + strconv.Itoa(i)
		if i%100 == 0 {
			u = "{evil}" + u
		}
		p := proto.PartitionOf(u)
		counts[p]++
		slot := proto.Slot(proto.RunKey(p))
		for _, k := range []string{proto.UserStreamKey(u), proto.UserMetaKey(u), proto.UserPresenceKey(u), proto.UserChannel(u)} {
			if proto.Slot(k) != slot {
				t.Fatalf("%q is in slot %d, the run key of partition %d in %d", k, proto.Slot(k), p, slot)
			}
		}
	}
	for p, n := range counts {
		if n < 50 { // 100 expected
			t.Errorf("partition %d holds %d of 1600 users", p, n)
		}
	}
	b := proto.Slot(proto.RunKey(proto.BroadcastPartition))
	if proto.Slot(proto.BroadcastStreamKey) != b || proto.Slot(proto.BroadcastMetaKey) != b {
		t.Error("the broadcast stream's keys are not in its partition's slot")
	}
	// The partition is part of the key names: it must never change.
	for u, want := range map[string]int{"alice": 7, "bob": 4, "": 5} {
		if got := proto.PartitionOf(u); got != want {
			t.Errorf("PartitionOf(%q) = %d, want %d: the key names of every stored stream would change", u, got, want)
		}
	}
}
