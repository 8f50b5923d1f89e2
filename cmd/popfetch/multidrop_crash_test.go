package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// TestMultidropCrashSafety kills a real `popfetch fetch` with SIGKILL in the
// middle of multidrop messages to many users who share one target (a
// {user} Maildir template, one MDA argv), restarts it, and checks that
// every user gets every message and that each kill duplicates at most the
// copies in flight: one per message being delivered (up to 2 here), not
// every user already served. Before each copy was recorded as it
// completed, a kill duplicated all the users the run had served.
func TestMultidropCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: several kills")
	}
	srv := dovecottest.Start(t, dovecottest.Options{})
	const users, msgs = 60, 2
	var addrs, userBlocks []string
	for i := range users {
		addrs = append(addrs, fmt.Sprintf("u%02d@example.com", i))
		userBlocks = append(userBlocks, fmt.Sprintf("    user %q {}", fmt.Sprintf("u%02d", i)))
	}
	for _, kind := range []string{"maildir", "mda"} {
		t.Run(kind, func(t *testing.T) {
			mb := srv.AddUser(t, "mdcrash"+kind, "pw")
			var raw [][]byte
			for i := 1; i <= msgs; i++ {
				raw = append(raw, fmt.Appendf(nil, "From: a@example.net\r\nTo: %s\r\nSubject: to all %d\r\nMessage-ID: <all-%d@example.net>\r\nX-Seq: %d\r\n\r\nbody\r\n",
					strings.Join(addrs, ",\r\n\t"), i, i, i))
			}
			mb.Put(t, raw...)
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			if err := os.Mkdir(out, 0o700); err != nil {
				t.Fatal(err)
			}
			deliverBlock := fmt.Sprintf("maildir = %q", filepath.Join(out, "{user}"))
			if kind == "mda" {
				// A complete file per copy, written in tmp/ and renamed
				// into new/ when it is complete (the Maildir protocol).
				script := filepath.Join(dir, "mda.sh")
				writeFile(t, script, fmt.Sprintf("#!/bin/sh\nd=%[1]q/\"$1\" && mkdir -p \"$d/new\" \"$d/tmp\" && cat > \"$d/tmp/$$\" && mv \"$d/tmp/$$\" \"$d/new/$$\"\n", out))
				if err := os.Chmod(script, 0o700); err != nil {
					t.Fatal(err)
				}
				deliverBlock = fmt.Sprintf("mda = [%q, \"{user}\"]", script)
			}
			rc := filepath.Join(dir, "popfetch.hcl")
			writeFile(t, filepath.Join(dir, "pw"), "pw\n")
			writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
				name: "md", port: srv.PlainPort, user: mb.User, passFile: filepath.Join(dir, "pw"), deliver: deliverBlock,
				extra: []string{fmt.Sprintf(`multidrop {
    local_domains    = ["example.com"]
    fallback_headers = ["To"]
%s
  }`, strings.Join(userBlocks, "\n"))},
			}))

			// copies counts the complete copies per user and X-Seq, in
			// the Maildir of every user that got one.
			copies := func() (map[string]int, int) {
				got := map[string]int{}
				total := 0
				ents, _ := os.ReadDir(out)
				for _, e := range ents {
					if !e.IsDir() {
						continue
					}
					for seq, c := range seqCounts(t, filepath.Join(out, e.Name())) {
						got[fmt.Sprintf("%s/%d", e.Name(), seq)] += c
						total += c
					}
				}
				return got, total
			}
			count := func() int { _, n := copies(); return n }
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
			const wantKills = 5
			killedAt := killLoop(t, rc, 31, count, func(base, kills int) int {
				if left := users*msgs - base; kills < wantKills && left > 10 {
					return base + 5 + rng.IntN(min(left-5, 25))
				}
				return -1
			}, func() {
				// An MDA outlives the kill: let the ones in flight
				// finish before counting for the next run.
				time.Sleep(200 * time.Millisecond)
			})
			got, total := copies()
			dups := 0
			for u := range users {
				for seq := 1; seq <= msgs; seq++ {
					switch c := got[fmt.Sprintf("u%02d/%d", u, seq)]; {
					case c == 0:
						t.Errorf("u%02d never got message %d", u, seq)
					case c > 1:
						dups += c - 1
					}
				}
			}
			t.Logf("copies at each kill %v; %d copies, %d duplicates", killedAt, total, dups)
			if len(killedAt) < wantKills/2 {
				t.Fatalf("only %d kills landed during delivery: the test proved little", len(killedAt))
			}
			if limit := len(killedAt) * msgs; dups > limit {
				t.Errorf("%d duplicates after %d kills; want at most %d (the copies in flight: one per message being delivered)", dups, len(killedAt), limit)
			}
			if c := mb.Count(t); c != 0 {
				t.Errorf("server holds %d messages; want 0", c)
			}
		})
	}
}
