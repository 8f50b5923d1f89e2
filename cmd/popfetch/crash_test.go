package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// TestCrashSafety kills a real `popfetch fetch` with SIGKILL at random
// moments of a 500-message fetch from a real dovecot (while messages are
// arriving in the Maildir), restarts it, and checks the delivery promise
// (fetch/doc.go): every message ends up in the Maildir, and each kill
// duplicates at most the one message in flight.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 500 messages, several kills")
	}
	srv := dovecottest.Start(t, dovecottest.Options{})
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			const n = 500
			mb := srv.AddUser(t, fmt.Sprintf("crash%v", keep), "pw")
			var msgs [][]byte
			for i := 1; i <= n; i++ {
				msgs = append(msgs, []byte(fmt.Sprintf("From: a@example.net\r\nTo: b@example.com\r\nSubject: crash %d\r\nX-Seq: %d\r\n\r\n%s\r\n", i, i, bytes.Repeat([]byte("crash-test body line\r\n"), i%50+1))))
			}
			mb.Put(t, msgs...)
			dir := t.TempDir()
			maildir := filepath.Join(dir, "Maildir")
			rc := filepath.Join(dir, "popfetch.hcl")
			writeFile(t, filepath.Join(dir, "pw"), "pw\n")
			writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
				name: "crash", port: srv.PlainPort, user: mb.User, passFile: filepath.Join(dir, "pw"), keep: keep, maildir: maildir,
			}))

			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			// Each kill lands a random few messages into a run, judged
			// by the Maildir growing, so it hits a fetch in progress
			// rather than the connect or the login. After 8 kills the
			// run may finish.
			const wantKills = 8
			killedAt := killLoop(t, rc, 41, func() int { return maildirCount(t, maildir) }, func(base, kills int) int {
				if left := n - base; kills < wantKills && left > 1 {
					return base + 1 + rng.IntN(min(left-1, 60))
				}
				return -1 // run to completion
			}, nil)
			kills := len(killedAt)
			midFetch := 0
			for _, c := range killedAt {
				if c > 0 && c < n {
					midFetch++
				}
			}
			t.Logf("Maildir count at each kill: %v", killedAt)
			if midFetch < wantKills/2 {
				t.Fatalf("only %d of %d kills landed while messages were being fetched (Maildir counts %v): the test proved little", midFetch, kills, killedAt)
			}
			dups := delivertest.Duplicates(t, seqCounts(t, maildir), n)
			tmp, _ := os.ReadDir(filepath.Join(maildir, "tmp"))
			t.Logf("%d kills, %d duplicates, %d files left in tmp/", kills, dups, len(tmp))
			if dups > kills {
				t.Errorf("%d duplicates after %d kills: more than the one in-flight message per kill", dups, kills)
			}
			want := 0
			if keep {
				want = n
			}
			if got := mb.Count(t); got != want {
				t.Errorf("server holds %d messages; want %d", got, want)
			}
		})
	}
}
