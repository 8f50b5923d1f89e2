package uidl

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIdentities: a UID can hold several identities (a server that reuses
// it), each written once, and they survive reopening and compaction in
// order.
func TestIdentities(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "uidl", "j")
	s := mustOpen(t, path)
	a := Identity{Size: 100, Digest: "0123abcd"}
	b := Identity{Size: 100, Digest: "ffee"}
	now := time.Unix(1700000000, 0)
	for _, step := range []struct {
		id   Identity
		sync bool
	}{{a, true}, {a, false}, {b, false}, {a, true}} {
		if err := s.AddIdentity("u1", step.id, now, step.sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add("u2", now); err != nil {
		t.Fatal(err)
	}
	if err := s.AddIdentity("u3", Identity{Size: 1, Digest: "XY"}, now, true); err == nil {
		t.Fatal("AddIdentity with a non-hex digest = nil; want error")
	}
	if got := s.Identities("u1"); !slices.Equal(got, []Identity{a, b}) {
		t.Fatalf("Identities(u1) = %v; want [a b]", got)
	}
	if got := s.Identities("u2"); got != nil || !s.Has("u2") {
		t.Fatalf("Identities(u2) = %v, Has = %v; want nil, true", got, s.Has("u2"))
	}
	s.Close()
	want := header + "\n+ u1 1700000000 100 0123abcd\n+ u1 1700000000 100 ffee\n+ u2 1700000000\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("journal = %q; want %q", got, want)
	}
	s = mustOpen(t, path)
	if err := s.compactNow(); err != nil {
		t.Fatal(err)
	}
	if got := s.Identities("u1"); !slices.Equal(got, []Identity{a, b}) {
		t.Fatalf("after reopen and compaction Identities(u1) = %v; want [a b]", got)
	}
	s.Close()
	if got := readFile(t, path); got != want {
		t.Fatalf("compacted journal = %q; want %q", got, want)
	}
}

// TestIdentitiesBounded: the oldest identity of a UID is dropped beyond
// MaxIdentities, the same way on replay as in memory.
func TestIdentitiesBounded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "uidl", "j")
	s := mustOpen(t, path)
	for i := range MaxIdentities + 3 {
		if err := s.AddIdentity("u", Identity{Size: int64(i), Digest: fmt.Sprintf("%x", i+1)}, time.Unix(1, 0), false); err != nil {
			t.Fatal(err)
		}
	}
	got := s.Identities("u")
	s.Close()
	if len(got) != MaxIdentities || got[0].Size != 3 {
		t.Fatalf("Identities = %d, first size %d; want %d, first 3", len(got), got[0].Size, MaxIdentities)
	}
	s = mustOpen(t, path)
	defer s.Close()
	if again := s.Identities("u"); !slices.Equal(again, got) {
		t.Fatalf("replayed Identities = %v; want %v", again, got)
	}
}

// TestIntentIdentity: an intent carries the identity of its message, so
// that recovering it records the UID with that identity.
func TestIntentIdentity(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "uidl", "j")
	s := mustOpen(t, path)
	id := Identity{Size: 42, Digest: "abc"}
	if err := s.IntendIdentity("u", "/m/new/1 x", id); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got, want := readFile(t, path), "i u "; !strings.Contains(got, want) || !strings.HasSuffix(got, " /m/new/1%20x 42 abc\n") {
		t.Fatalf("journal = %q", got)
	}
	s = mustOpen(t, path)
	defer s.Close()
	if got := s.IntentIdentity("u"); got != id {
		t.Fatalf("IntentIdentity = %v; want %v", got, id)
	}
	if got := s.Intents()["u"]; got != "/m/new/1 x" {
		t.Fatalf("Intents[u] = %q", got)
	}
}

// TestOpenUpgradesV1: a journal written by an older popfetch (format 1,
// no identities) is read as before and rewritten as the current version
// on open, before anything of the new format is appended to it.
func TestOpenUpgradesV1(t *testing.T) {
	t.Parallel()
	path := writeJournal(t, headerV1+"\n+ a 10\nr b 11 x@example.com\ni c 12 /m/new/1\n+ d 13\n- d\n")
	s := mustOpen(t, path)
	if !s.Has("a") || s.Identities("a") != nil || !slices.Equal(s.Recipients("b"), []string{"x@example.com"}) || s.Intents()["c"] != "/m/new/1" || s.Has("d") {
		t.Fatalf("state after upgrade is wrong: %s", viewOf(s.st))
	}
	want := header + "\n+ a 10\nr b 11 x@example.com\ni c 12 /m/new/1\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("upgraded journal = %q; want %q", got, want)
	}
	id := Identity{Size: 5, Digest: "ab"}
	if err := s.AddIdentity("a", id, time.Unix(20, 0), true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The time of this delivery, not the UID's first-seen time.
	if got := readFile(t, path); got != want+"+ a 20 5 ab\n" {
		t.Fatalf("journal = %q", got)
	}
}

// TestGiveUpSize: a message given up is recorded with its size, so that
// another message the server lists later under the same UID (another size)
// is not skipped with it; a record without size (format 1, GiveUp) still
// covers any size.
func TestGiveUpSize(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "uidl", "j")
	s := mustOpen(t, path)
	now := time.Unix(1700000000, 0)
	if err := s.GiveUpSize("u", 100, now); err != nil {
		t.Fatal(err)
	}
	if err := s.GiveUpSize("u", 100, now); err != nil { // again: nothing written
		t.Fatal(err)
	}
	if err := s.GiveUp("v", now); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		for _, c := range []struct {
			uid  string
			size int64
			want bool
		}{{"u", 100, true}, {"u", 101, false}, {"v", 7, true}, {"w", 100, false}} {
			if got := s.GivenUpAt(c.uid, c.size); got != c.want {
				t.Errorf("GivenUpAt(%s, %d) = %v; want %v", c.uid, c.size, got, c.want)
			}
		}
	}
	check(s)
	s.Close()
	if got, want := readFile(t, path), header+"\np u 1700000000 100\np v 1700000000\n"; got != want {
		t.Fatalf("journal = %q; want %q", got, want)
	}
	s = mustOpen(t, path)
	defer s.Close()
	check(s)
	if err := s.compactNow(); err != nil {
		t.Fatal(err)
	}
	check(s)
	// The UID given up again for a message of another size.
	if err := s.GiveUpSize("u", 5, now); err != nil {
		t.Fatal(err)
	}
	if !s.GivenUpAt("u", 5) || s.GivenUpAt("u", 100) {
		t.Fatal("a second GiveUpSize did not replace the size")
	}
}

// TestRecipientsOf: the recipients a multidrop delivery recorded belong to
// one message; another message under the same UID (a server that reuses
// it) starts with none, and its records replace the first one's.
func TestRecipientsOf(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "uidl", "j")
	s := mustOpen(t, path)
	x, y := Identity{Size: 10, Digest: "aa"}, Identity{Size: 10, Digest: "bb"}
	now := time.Unix(1700000000, 0)
	for _, r := range []string{"r1@x", "r2@x"} {
		if err := s.AddRecipientIdentity("u", r, x, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddRecipient("v", "q@x", now); err != nil { // format 1 style
		t.Fatal(err)
	}
	check := func(s *Store, uid string, id Identity, want ...string) {
		t.Helper()
		if got := s.RecipientsOf(uid, id, false); !slices.Equal(got, want) {
			t.Errorf("RecipientsOf(%s, %v) = %v; want %v", uid, id, got, want)
		}
		// A UID listed more than once: recipients without an identity
		// count for none of its messages; those with one still do.
		if got := s.RecipientsOf(uid, id, true); uid == "v" && got != nil || uid != "v" && !slices.Equal(got, want) {
			t.Errorf("RecipientsOf(%s, %v, shared) = %v", uid, id, got)
		}
	}
	check(s, "u", x, "r1@x", "r2@x")
	check(s, "u", y)
	check(s, "v", y, "q@x")
	if err := s.AddRecipientIdentity("u", "r2@x", y, now); err != nil {
		t.Fatal(err)
	}
	check(s, "u", y, "r2@x")
	check(s, "u", x)
	s.Close()
	want := header + "\nr u 1700000000 r1@x 10 aa\nr u 1700000000 r2@x 10 aa\nr v 1700000000 q@x\nr u 1700000000 r2@x 10 bb\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("journal = %q; want %q", got, want)
	}
	s = mustOpen(t, path)
	defer s.Close()
	check(s, "u", y, "r2@x")
	if err := s.compactNow(); err != nil {
		t.Fatal(err)
	}
	check(s, "u", y, "r2@x")
	check(s, "v", x, "q@x")
}

// TestOnServer: the delivered UIDs with their identities, less those
// whose DELE the server accepted since, across reopening and compaction;
// a new message delivered under such a UID is on the server again.
func TestOnServer(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "uidl", "j")
	s := mustOpen(t, path)
	now := time.Unix(1700000000, 0)
	a, b := Identity{Size: 10, Digest: "aa"}, Identity{Size: 11, Digest: "bb"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddIdentity("u1", a, now, true))
	must(s.Add("u2", now))
	must(s.AddIdentity("u3", a, now, true))
	must(s.AddIdentity("u4", a, now, true))
	must(s.AddRecipient("u5", "r@example.com", now)) // not delivered
	_, err := s.RefuseDele("u3", now)
	must(err)
	must(s.DeleAccepted("u1", now))
	must(s.DeleAccepted("u4", now))
	must(s.AddIdentity("u4", b, now, true)) // new mail under u4
	must(s.DeleAccepted("u5", now))
	check := func(when string) {
		t.Helper()
		got := s.OnServer()
		if len(got) != 3 || got["u2"] == nil || len(got["u2"]) != 0 || !slices.Equal(got["u3"], []Identity{a}) || !slices.Equal(got["u4"], []Identity{a, b}) {
			t.Fatalf("%s: OnServer = %v; want u2 [], u3 [a], u4 [a b]", when, got)
		}
	}
	check("at once")
	s.Close()
	s = mustOpen(t, path)
	check("after reopening")
	must(s.compactNow())
	s.Close()
	s = mustOpen(t, path)
	check("after compaction")
	s.Close()
}

// TestAddCopies: identical copies listed under one UID at once are held as
// that many identities, across reopening and compaction; nothing is
// written for a UID not delivered with that identity.
func TestAddCopies(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "uidl", "j")
	s := mustOpen(t, path)
	now := time.Unix(1700000000, 0)
	a, b := Identity{Size: 10, Digest: "aa"}, Identity{Size: 10, Digest: "bb"}
	if err := s.AddIdentity("u", a, now, true); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		uid string
		id  Identity
		n   int
	}{{"u", a, 2}, {"u", a, 2}, {"u", b, 3}, {"v", a, 2}, {"u", a, 3}} {
		if err := s.AddCopies(step.uid, step.id, step.n, now); err != nil {
			t.Fatal(err)
		}
	}
	want := []Identity{a, a, a}
	if got := s.Identities("u"); !slices.Equal(got, want) {
		t.Fatalf("Identities = %v; want %v", got, want)
	}
	if s.Has("v") {
		t.Fatal("AddCopies recorded an undelivered UID")
	}
	s.Close()
	s = mustOpen(t, path)
	if got := s.Identities("u"); !slices.Equal(got, want) {
		t.Fatalf("after reopening: Identities = %v; want %v", got, want)
	}
	var st state
	st.m = map[string]entry{"u": s.st.m["u"]}
	var buf strings.Builder
	if _, err := writeCompact(&buf, &st); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n+ u "); n != 3 {
		t.Fatalf("compaction wrote %d records of u; want 3\n%s", n, buf.String())
	}
	s.Close()
}
