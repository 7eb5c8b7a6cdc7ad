package proto

// Partitions is how many partitions the users' Redis keys are spread over
// (docs/operations.md, "Redis Cluster"). A user's stream, its meta and its
// per-user channel carry the hash tag of the user's partition
// (PartitionOf), so on a Redis Cluster the three share one hash slot and a
// script may touch them together; one dispatch to many users is one script
// call per partition there. On one Redis the tags change nothing but the
// names.
const Partitions = 16

// ClusterSlots is the number of hash slots of a Redis Cluster.
const ClusterSlots = 16384

// partitionTags holds the hash tag of each partition. Bare tags {0}..{15}
// would land on slots spread at random, idling some masters of a cluster
// (centrifuge#554); these are balanced instead: tag i's slot (CRC16 mod
// 16384, as Redis Cluster computes it) lies near the middle of the i-th of
// Partitions equal slot ranges, so any contiguous split of the slots among
// masters (as redis-cli --cluster create makes) gives each master a share
// of the partitions in proportion to its slots. TestPartitionTagsBalanced
// recomputes the slots.
var partitionTags = [Partitions]string{
	"18", // slot 511
	"3",  // slot 1584
	"1a", // slot 2595
	"j",  // slot 3564
	"19", // slot 4574
	"2",  // slot 5649
	"64", // slot 6628
	"k",  // slot 7629
	"6n", // slot 8795
	"1",  // slot 9842
	"1c", // slot 10849
	"h",  // slot 11694
	"6o", // slot 12922
	"0",  // slot 13907
	"1b", // slot 14912
	"i",  // slot 15759
}

// PartitionTag returns the hash tag of partition p, 0 <= p < Partitions,
// without its braces.
func PartitionTag(p int) string { return partitionTags[p] }

// PartitionOf returns the partition of user: FNV-1a (32 bits) of the user
// id, modulo Partitions. It is part of the key names, so it never changes
// for a given Partitions.
func PartitionOf(user string) int {
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= 16777619
	}
	return int(h % Partitions)
}

// BroadcastPartition is the partition of the broadcast stream's keys.
const BroadcastPartition = 0

// partitionPrefix returns "sb:{<tag>}:", the start of every key of
// partition p.
func partitionPrefix(p int) string { return "sb:{" + partitionTags[p] + "}:" }

// RunKey returns the key of partition p that holds the run id of the Redis
// server its streams were written on; every client connection sets it
// before its first command (on a cluster, on the partitions its node
// serves), so a restarted or failed-over server is noticed. On one Redis
// the scripts use partition BroadcastPartition's for every stream, so that
// one key holds the run.
func RunKey(p int) string { return partitionPrefix(p) + "run" }

// Slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of its
// hash tag, the part between the first '{' and the next '}' when that is
// not empty, or of the whole key, modulo ClusterSlots.
func Slot(key string) int {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					return int(crc16(key) % ClusterSlots)
				}
			}
			break
		}
	}
	return int(crc16(key) % ClusterSlots)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), Redis Cluster's.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
