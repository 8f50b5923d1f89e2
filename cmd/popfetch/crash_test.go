package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

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
			writeFile(t, rc, fmt.Sprintf(`
state_dir = %q
account "crash" {
  server        = "127.0.0.1"
  port          = %d
  tls           = "none"
  username      = %q
  password_file = %q
  keep          = %v
  deliver { maildir = %q }
}
`, filepath.Join(dir, "state"), srv.PlainPort, mb.User, filepath.Join(dir, "pw"), keep, maildir))

			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			countNew := func() int {
				ents, _ := os.ReadDir(filepath.Join(maildir, "new"))
				return len(ents)
			}
			// Each kill lands a random few messages into a run, judged
			// by the Maildir growing, so it hits a fetch in progress
			// rather than the connect or the login. After 8 kills the
			// run may finish.
			const wantKills = 8
			var killedAt []int // Maildir count at each kill
			for attempt := 0; ; attempt++ {
				if attempt > 40 {
					t.Fatalf("popfetch did not complete in 40 attempts")
				}
				cmd := exec.Command(popfetchBin, "-f", rc, "fetch")
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				base := countNew()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				target := -1 // run to completion
				if left := n - base; len(killedAt) < wantKills && left > 1 {
					target = base + 1 + rng.IntN(min(left-1, 60))
				}
				tick := time.NewTicker(2 * time.Millisecond)
				giveUp := time.After(2 * time.Minute)
				killed := false
			watch:
				for {
					select {
					case err := <-done:
						if err != nil {
							t.Fatalf("popfetch fetch failed: %v\n%s", err, out.String())
						}
						break watch
					case <-tick.C:
						if c := countNew(); target >= 0 && c >= target {
							cmd.Process.Signal(syscall.SIGKILL)
							<-done
							killedAt = append(killedAt, c)
							killed = true
							break watch
						}
					case <-giveUp:
						cmd.Process.Signal(syscall.SIGKILL)
						<-done
						t.Fatalf("popfetch fetch still running after 2 minutes, Maildir at %d\n%s", countNew(), out.String())
					}
				}
				tick.Stop()
				if !killed {
					break
				}
			}
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
			seen := map[int]int{}
			ents, err := os.ReadDir(filepath.Join(maildir, "new"))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(maildir, "new", e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				i := bytes.Index(b, []byte("\nX-Seq: "))
				if i < 0 {
					t.Fatalf("%s has no X-Seq", e.Name())
				}
				rest := b[i+8:]
				seq, err := strconv.Atoi(string(rest[:bytes.IndexByte(rest, '\n')]))
				if err != nil {
					t.Fatal(err)
				}
				seen[seq]++
			}
			dups := 0
			for i := 1; i <= n; i++ {
				switch c := seen[i]; {
				case c == 0:
					t.Errorf("message %d lost", i)
				case c > 1:
					dups += c - 1
				}
			}
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

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
