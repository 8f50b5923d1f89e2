package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/uidl"
)

// TestDeleteAfterCrashSafety: a keep mode mailbox on a real dovecot whose
// messages were all delivered 8 days ago (the journal's delivery times
// are moved back, as the binary runs on the real clock) is cleaned up by
// `popfetch fetch` with delete_after = "7d" while SIGKILL hits the runs at
// random moments of their checks and DELEs. Whatever the kill interrupts,
// no message is delivered again (each is only checked against its
// recorded identity) and none is lost: in the end the server is empty and
// the Maildir holds every message once.
func TestDeleteAfterCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a real dovecot, several kills")
	}
	srv := dovecottest.Start(t, dovecottest.Options{})
	const n = 200
	mb := srv.AddUser(t, "delafter", "pw")
	var msgs [][]byte
	for i := 1; i <= n; i++ {
		msgs = append(msgs, []byte(fmt.Sprintf("From: a@example.net\r\nTo: b@example.com\r\nSubject: old %d\r\nX-Seq: %d\r\n\r\n%s\r\n", i, i, bytes.Repeat([]byte("kept body line\r\n"), i%50+1))))
	}
	mb.Put(t, msgs...)
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "popfetch.hcl")
	state := filepath.Join(dir, "state")
	writeFile(t, filepath.Join(dir, "pw"), "pw\n")
	writeFile(t, rc, rcText(state, nil, rcAccount{name: "old", port: srv.PlainPort, user: mb.User, passFile: filepath.Join(dir, "pw"), keep: true, maildir: maildir,
		extra: []string{`delete_after = "7d"`}}))
	// The first run delivers everything and deletes nothing.
	if r := daemonCLI(t, rc, "fetch"); r.code != 0 {
		t.Fatalf("first run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := mb.Count(t); got != n {
		t.Fatalf("after the first run the server holds %d; want %d", got, n)
	}
	checkComplete(t, maildir, n)
	// Move every delivery 8 days back. The times keep their width, so
	// the journal's length mark still holds.
	journals, _ := filepath.Glob(filepath.Join(state, "uidl", "*.uidl"))
	if len(journals) != 1 {
		t.Fatalf("journals %q", journals)
	}
	b, err := os.ReadFile(journals[0])
	if err != nil {
		t.Fatal(err)
	}
	plus := regexp.MustCompile(`(?m)^\+ (\S+) (\d{10})\b`)
	moved := plus.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := plus.FindSubmatch(m)
		v, _ := strconv.ParseInt(string(sub[2]), 10, 64)
		return fmt.Appendf(nil, "+ %s %d", sub[1], v-8*24*3600)
	})
	if len(moved) != len(b) || bytes.Equal(moved, b) {
		t.Fatal("moving the delivery times changed the journal's length, or nothing")
	}
	writeFile(t, journals[0], string(moved))
	s, err := uidl.Open(journals[0])
	if err != nil {
		t.Fatalf("journal with moved times: %v", err)
	}
	s.Close()

	// Dovecot removes nothing before QUIT, so the kills are timed by the
	// clock: a random 5 to 60 ms into each run (a whole run takes longer),
	// which lands in the login, the checks or the DELEs; the loop ends
	// with the first run that completes.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var start time.Time
	const wantKills = 6
	killedAt := killLoop(t, rc, 30, func() int {
		return int(time.Since(start) / time.Millisecond)
	}, func(_, kills int) int {
		start = time.Now()
		if kills < wantKills {
			return 5 + rng.IntN(55)
		}
		return -1
	}, nil)
	t.Logf("killed at %v ms; server holds %d", killedAt, mb.Count(t))
	if len(killedAt) < wantKills/2 {
		t.Fatalf("only %d kills: the runs completed before the kills, the test proved little", len(killedAt))
	}
	if got := mb.Count(t); got != 0 {
		t.Errorf("server holds %d messages; want none (all delivered 8 days ago)", got)
	}
	// Every message once: a check never delivers one again.
	checkComplete(t, maildir, n)
}
