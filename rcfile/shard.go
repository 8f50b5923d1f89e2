package rcfile

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxShards bounds N in "i/N": more replicas than this is a typo, and the
// bound keeps the numbers far from any overflow.
const MaxShards = 1000

// Shard is the part of the accounts one replica polls: the accounts whose
// mailbox (Account.Mailbox) ShardOf assigns to Index, of Count shards.
// The zero Shard, and any with Count 1, owns every account.
type Shard struct {
	Index int // 0 ≤ Index < Count, as Kubernetes numbers StatefulSet pods
	Count int
}

// String is "i/N", the form ParseShard reads; "" for the zero Shard.
func (s Shard) String() string {
	if s.Count == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// Sharded says whether s leaves some accounts to other replicas.
func (s Shard) Sharded() bool { return s.Count > 1 }

// Owns says whether a replica of shard s polls a.
func (s Shard) Owns(a *Account) bool {
	return !s.Sharded() || ShardOf(a.Mailbox(), s.Count) == s.Index
}

// Owned returns the accounts of accts that s owns, in their order.
func (s Shard) Owned(accts []*Account) []*Account {
	if !s.Sharded() {
		return accts
	}
	var out []*Account
	for _, a := range accts {
		if s.Owns(a) {
			out = append(out, a)
		}
	}
	return out
}

// ErrShardSyntax: a shard is not "i/N" with 0 ≤ i < N ≤ MaxShards.
var ErrShardSyntax = errors.New("a shard is i/N with 0 ≤ i < N")

// ParseShard reads "i/N": decimal numbers without sign, spaces or leading
// zeros, 1 ≤ N ≤ MaxShards and 0 ≤ i < N (the first replica is 0/N).
// Strict on purpose: a replica that misread its shard would poll the
// accounts of another, or none.
func ParseShard(s string) (Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: %w (such as 0/3)", s, ErrShardSyntax)
	}
	i, ierr := shardNumber(is)
	n, nerr := shardNumber(ns)
	switch {
	case ierr != nil || nerr != nil:
		return Shard{}, fmt.Errorf("shard %q: %w (decimal numbers, such as 0/3)", s, ErrShardSyntax)
	case n < 1 || n > MaxShards:
		return Shard{}, fmt.Errorf("shard %q: %w and 1 ≤ N ≤ %d", s, ErrShardSyntax, MaxShards)
	case i >= n:
		return Shard{}, fmt.Errorf("shard %q: %w; shards are numbered from 0, so the last of %d is %d/%d", s, ErrShardSyntax, n, n-1, n)
	}
	return Shard{Index: i, Count: n}, nil
}

// shardNumber is a decimal number of at most 4 digits, "0" or without a
// leading zero.
func shardNumber(s string) (int, error) {
	if s == "" || len(s) > 4 || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, ErrShardSyntax
	}
	return strconv.Atoi(s)
}

// ShardOf is the shard, 0 ≤ shard < n, that polls the mailbox named
// mailbox (Account.Mailbox). Replicas of different versions must agree
// on it, or after an upgrade two would poll one mailbox (each with its
// own journal: with keep = true, every message delivered twice) or none
// would, so the rule is fixed and shard_test.go pins it:
//
//  1. the key is the first 8 bytes of the SHA-256 digest of the mailbox
//     name (UTF-8), read as a big-endian unsigned integer;
//  2. the shard is the jump consistent hash of the key into n buckets
//     (John Lamping and Eric Veach, "A Fast, Minimal Memory, Consistent
//     Hash Algorithm", 2014).
//
// The jump hash rather than key mod n because it moves as few mailboxes
// as possible when n changes: from n to n+1 replicas, only about
// 1/(n+1) of the mailboxes move, all of them to the new replica; with
// mod, nearly all would move. A mailbox that moves is new to the journal
// of the replica it moves to (see popfetch.hcl(5), shard).
func ShardOf(mailbox string, n int) int {
	if n <= 1 {
		return 0
	}
	sum := sha256.Sum256([]byte(mailbox))
	return jumpHash(binary.BigEndian.Uint64(sum[:8]), n)
}

// jumpHash is the jump consistent hash as published by Lamping and Veach
// (their C++ function JumpConsistentHash), with the same 64-bit linear
// congruential step and the same double-precision arithmetic, so that it
// gives their results. Each operation is a single IEEE 754 division or
// multiplication, correctly rounded on every platform Go supports; there
// is no addition to fuse.
func jumpHash(key uint64, n int) int {
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		q := float64(int64(1)<<31) / float64((key>>33)+1)
		j = int64(float64(b+1) * q)
	}
	return int(b)
}
