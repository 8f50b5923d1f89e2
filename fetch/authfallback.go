package fetch

import (
	"log/slog"
	"strconv"

	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/rcfile"
)

// noSCRAM reports whether auth = "auto" should pass over SCRAM for the
// account: an earlier login in this process saw SCRAM refused and PLAIN or
// USER/PASS accepted (see pop3.Conn.Authenticate), so the failed attempt is
// not repeated every poll. What was learnt holds for the same server,
// port, user and TLS mode only: a reload that changes any of them tries
// SCRAM again (and pop3 honours NoSCRAM only over verified TLS).
func (p *Poller) noSCRAM(a *rcfile.Account) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.scramRefused[scramKey(a)]
}

// scramKey names where a SCRAM refusal was learnt.
func scramKey(a *rcfile.Account) string {
	return a.Name + "\x00" + a.Server + "\x00" + strconv.Itoa(a.Port) + "\x00" + a.Username + "\x00" + string(a.TLS)
}

// loggedIn notes a login that fell back from SCRAM (see
// pop3.Conn.FellBack) and warns about it once per account and process.
func (p *Poller) loggedIn(log *slog.Logger, a *rcfile.Account, c *pop3.Conn) {
	refused := c.FellBack()
	if refused == "" {
		return
	}
	p.mu.Lock()
	key := scramKey(a)
	seen := p.scramRefused[key]
	if p.scramRefused == nil {
		p.scramRefused = map[string]bool{}
	}
	p.scramRefused[key] = true
	p.mu.Unlock()
	if !seen {
		log.Warn("the server refused SCRAM but accepted the password with another mechanism; set auth = \"plain\" (or give the server's password database SCRAM secrets) to skip the failed attempt",
			"mechanism", refused.String(), "fallback", c.Mechanism().String())
	}
}
