package uidl

import (
	"fmt"
	"testing"
)

const benchN = 100_000

// BenchmarkOpen100k opens a journal of 100,000 delivered UIDs: lock, replay,
// no compaction needed.
func BenchmarkOpen100k(b *testing.B) {
	path := writeJournal(b, bigJournal(benchN))
	b.ReportAllocs()
	for b.Loop() {
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != benchN {
			b.Fatalf("Len = %d", s.Len())
		}
		s.Close()
	}
}

// BenchmarkAdd measures one durable record: one write and one fsync on the
// filesystem holding the test's temporary directory.
func BenchmarkAdd(b *testing.B) {
	s := mustOpen(b, journalPath(b))
	i := 0
	for b.Loop() {
		if err := s.Add(fmt.Sprintf("uid-%d", i), t0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRetain100k runs Retain against a 100,000-UID store and a full
// server listing: "none" when nothing vanished (pure set comparison), "one"
// when one UID vanished per call (plus one "-" record and its fsync).
func BenchmarkRetain100k(b *testing.B) {
	onServer := uids(0, benchN)
	b.Run("none", func(b *testing.B) {
		s := mustOpen(b, writeJournal(b, bigJournal(benchN)))
		for b.Loop() {
			if err := s.Retain(onServer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one", func(b *testing.B) {
		s := mustOpen(b, writeJournal(b, bigJournal(benchN)))
		i := 0
		for b.Loop() {
			i = min(i+1, benchN)
			if err := s.Retain(onServer[i:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
