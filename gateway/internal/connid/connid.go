// Package connid makes connection ids that are unique across workers,
// restarts and gateway instances without coordination: a random 64-bit
// prefix chosen when the Generator is made, then a counter.
package connid

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"sync/atomic"
)

var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Generator hands out connection ids. It is safe for concurrent use.
type Generator struct {
	prefix string
	seq    atomic.Uint64
}

// New returns a Generator with a fresh random prefix.
func New() *Generator {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return &Generator{prefix: encoding.EncodeToString(b[:]) + "-"}
}

// Next returns a new id such as "mfzwizltmfzwi-1b".
func (g *Generator) Next() string {
	return g.prefix + strconv.FormatUint(g.seq.Add(1), 36)
}
