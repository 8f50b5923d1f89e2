package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// TestPollSharedStateUnderAttack: four accounts that share a state_dir
// (and so one spool directory, each poll holding it open) and a Maildir
// are polled at once, round after round, while the spool directory is
// removed every few milliseconds, sometimes with a symlink in its place
// for a moment, and the Maildir's tmp/ is renamed away and made again.
// Polls fail (the messages stay on the server), but once the attacks
// stop every message is in new/ exactly once and gone from its server.
func TestPollSharedStateUnderAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("stress")
	}
	const accounts, per = 4, 12
	base := t.TempDir()
	state := filepath.Join(base, "state")
	md := filepath.Join(base, "Maildir")
	var accs []*rcfile.Account
	var srvs []*pop3test.Server
	for i := range accounts {
		var msgs []pop3test.Message
		for j := range per {
			size := 2000
			if j%2 == 0 {
				size = 300 << 10 // spooled to a file
			}
			m := bigMsg(i*100+j, size)
			m.UID = fmt.Sprintf("a%d-%d", i, j)
			msgs = append(msgs, m)
		}
		srv := pop3test.NewServer(t, pop3test.Options{Messages: msgs, Capa: []string{"USER", "UIDL", "RESP-CODES", "PIPELINING"}})
		srvs = append(srvs, srv)
		a := testAccount(t, srv)
		a.Name = fmt.Sprintf("acct%d", i)
		a.MailboxID = fmt.Sprintf("box%d", i) // one user at one host, four ports
		a.StateDir = state
		a.Deliver.Maildir = md
		accs = append(accs, a)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		spool := filepath.Join(state, "spool")
		for i := 0; !stop.Load(); i++ {
			os.RemoveAll(spool)
			if i%3 == 0 {
				os.Symlink(base, spool)
				time.Sleep(time.Millisecond)
				os.Remove(spool)
			}
			if i%5 == 0 {
				os.Rename(filepath.Join(md, "tmp"), filepath.Join(base, fmt.Sprintf("oldtmp%d", i)))
				os.Mkdir(filepath.Join(md, "tmp"), 0o700)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	left := func() int {
		n := 0
		for _, s := range srvs {
			n += len(s.Messages())
		}
		return n
	}
	for round := 0; round < 16 && left() > 0; round++ {
		if round == 8 {
			stop.Store(true)
			wg.Wait()
		}
		var pw sync.WaitGroup
		for _, a := range accs {
			pw.Add(1)
			go func() {
				defer pw.Done()
				(&Poller{NoPollLog: true}).Poll(context.Background(), a)
			}()
		}
		pw.Wait()
	}
	if n := left(); n != 0 {
		t.Errorf("%d messages left on the servers", n)
	}
	if n := delivertest.MaildirCount(t, md, "new"); n != accounts*per {
		t.Errorf("%d messages in new/, want %d (each once)", n, accounts*per)
	}
}
