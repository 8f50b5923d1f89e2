package uidl

import (
	"testing"
	"time"
)

// TestDeliveredAt: the clock of delete_after is the time of the "+"
// record that recorded a message, not the UID's first-seen time, and it
// survives reopening and compaction; a time that an older popfetch wrote
// and that may be the first-seen time of a message seen long before its
// delivery is not trusted.
func TestDeliveredAt(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	day := 24 * time.Hour
	a := Identity{Size: 10, Digest: "aa"}
	b := Identity{Size: 20, Digest: "bb"}
	type want struct {
		uid, digest string
		at          time.Time
		ok          bool
	}
	tests := []struct {
		name    string
		journal string // "" = a new journal
		steps   func(s *Store) error
		want    []want
		first   map[string]time.Time
	}{
		{
			name: "delivered at once",
			steps: func(s *Store) error {
				return s.AddIdentity("u", a, t0, true)
			},
			want: []want{{"u", "aa", t0, true}, {"u", "bb", time.Time{}, false}, {"v", "aa", time.Time{}, false}},
		},
		{
			name: "noted as too large long before its delivery",
			steps: func(s *Store) error {
				if err := s.Note("u", t0); err != nil {
					return err
				}
				return s.AddIdentity("u", a, t0.Add(30*day), true)
			},
			want:  []want{{"u", "aa", t0.Add(30 * day), true}},
			first: map[string]time.Time{"u": t0},
		},
		{
			name: "given up, then another message under the UID delivered",
			steps: func(s *Store) error {
				if err := s.GiveUpSize("u", 99, t0); err != nil {
					return err
				}
				return s.AddIdentity("u", a, t0.Add(9*day), true)
			},
			want:  []want{{"u", "aa", t0.Add(9 * day), true}},
			first: map[string]time.Time{"u": t0},
		},
		{
			name: "multidrop: one recipient long before the rest",
			steps: func(s *Store) error {
				if err := s.AddRecipientIdentity("u", "x@example.com", a, t0); err != nil {
					return err
				}
				return s.AddIdentity("u", a, t0.Add(8*day), true)
			},
			want:  []want{{"u", "aa", t0.Add(8 * day), true}},
			first: map[string]time.Time{"u": t0},
		},
		{
			name: "partly delivered only",
			steps: func(s *Store) error {
				return s.AddRecipientIdentity("u", "x@example.com", a, t0)
			},
			want: []want{{"u", "aa", time.Time{}, false}},
		},
		{
			name: "a reused UID: each message its own time",
			steps: func(s *Store) error {
				if err := s.AddIdentity("u", a, t0, true); err != nil {
					return err
				}
				return s.AddIdentity("u", b, t0.Add(5*day), true)
			},
			want: []want{{"u", "aa", t0, true}, {"u", "bb", t0.Add(5 * day), true}},
		},
		{
			name: "copies keep their message's time",
			steps: func(s *Store) error {
				if err := s.AddIdentity("u", a, t0, true); err != nil {
					return err
				}
				if err := s.AddCopies("u", a, 2, t0.Add(3*day)); err != nil {
					return err
				}
				return s.Sync()
			},
			want: []want{{"u", "aa", t0, true}},
		},
		{
			name: "the same identity delivered again is not a new delivery",
			steps: func(s *Store) error {
				if err := s.AddIdentity("u", a, t0, true); err != nil {
					return err
				}
				return s.AddIdentity("u", a, t0.Add(3*day), true)
			},
			want: []want{{"u", "aa", t0, true}},
		},
		{
			// Format 2 gave a "+" the UID's first-seen time: the noted
			// message may have been delivered much later, so the
			// upgrade time stands in.
			name:    "older journal: noted and delivered under one time",
			journal: headerV2 + "\nn u 1600000000\n+ u 1600000000 10 aa\n",
			want:    []want{{"u", "aa", t0, true}},
			first:   map[string]time.Time{"u": time.Unix(1600000000, 0)},
		},
		{
			name:    "older journal: given up and delivered under one time",
			journal: headerV2 + "\np u 1600000000 5\n+ u 1600000000 10 aa\n",
			want:    []want{{"u", "aa", t0, true}},
		},
		{
			// A reused UID: the second message's record carried the
			// first one's time.
			name:    "older journal: a reused UID",
			journal: headerV2 + "\n+ u 1600000000 10 aa\n+ u 1600000000 20 bb\n",
			want:    []want{{"u", "aa", t0, true}, {"u", "bb", t0, true}},
			first:   map[string]time.Time{"u": time.Unix(1600000000, 0)},
		},
		{
			name:    "older journal: multidrop finished later",
			journal: headerV2 + "\nr u 1600000000 x@example.com 10 aa\n+ u 1600000000 10 aa\n",
			want:    []want{{"u", "aa", t0, true}},
		},
		{
			name:    "current journal: delivered at first sight",
			journal: header + "\n+ u 1700000000 10 aa\n",
			want:    []want{{"u", "aa", t0, true}},
		},
		{
			name:    "format 1: no identity, no clock",
			journal: headerV1 + "\n+ u 1700000000\n",
			want:    []want{{"u", "", time.Time{}, false}},
		},
		{
			name:    "forgotten",
			journal: header + "\n+ u 1700000000 10 aa\n- u\n",
			want:    []want{{"u", "aa", time.Time{}, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := tt.journal
			if j == "" {
				j = header + "\n"
			}
			path := writeJournal(t, j)
			// The upgrade of an older journal happens at t0; reopening
			// later must not move it.
			s := mustOpenAt(t, path, t0)
			if tt.steps != nil {
				if err := tt.steps(s); err != nil {
					t.Fatal(err)
				}
			}
			check := func(s *Store, when string) {
				t.Helper()
				for _, w := range tt.want {
					at, ok := s.DeliveredAt(w.uid, w.digest)
					if ok != w.ok || !at.Equal(w.at) {
						t.Errorf("%s: DeliveredAt(%s, %s) = %v, %v; want %v, %v", when, w.uid, w.digest, at, ok, w.at, w.ok)
					}
				}
				for uid, f := range tt.first {
					if got, _ := s.FirstSeen(uid); !got.Equal(f) {
						t.Errorf("%s: FirstSeen(%s) = %v; want %v", when, uid, got, f)
					}
				}
			}
			check(s, "live")
			s.Close()
			s = mustOpenAt(t, path, t0.Add(50*day))
			check(s, "reopened")
			if err := s.compactNow(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = mustOpenAt(t, path, t0.Add(90*day))
			defer s.Close()
			check(s, "compacted")
		})
	}
}

func mustOpenAt(t *testing.T, path string, now time.Time) *Store {
	t.Helper()
	s, err := OpenMigratingAt(path, nil, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return s
}
