package pop3

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xdg-go/scram"
)

// scramClients keeps a scram.Client per server, mechanism, user and
// password for the life of the process, once the server has shown that
// it keeps its salt. The library caches the keys a Client derives from
// the password, salt and iteration count, and RFC 5802 §5.1 lets a
// client cache them for a server that offers the same salt again (one
// that stores SCRAM credentials does): a daemon polling an account every
// few minutes then runs the PBKDF2 derivation (4096 iterations or more)
// once instead of at every login. A server that makes a new salt for
// every login (Dovecot with plaintext passwords does) gains nothing from
// a cached Client, which would only hold memory for each account: so a
// Client is kept only after two logins in a row met the same salt and
// count, and dropped when they change.
var scramClients scramCache

// maxSCRAMClients bounds the cache: passwords changed by reloads leave
// their old entries behind, and beyond this many the cache starts afresh.
const maxSCRAMClients = 1 << 14

// scramIdle is how long an entry may go unused before it is dropped, so
// that an old password (changed by a reload, or its account removed) does
// not stay in memory for the daemon's lifetime. It is twice the longest
// poll interval an admin sets in practice (a day): an account still
// polled that rarely pays one derivation more. The sweep runs at most
// once per scramSweepEvery.
const (
	scramIdle       = 48 * time.Hour
	scramSweepEvery = time.Hour
)

type scramCache struct {
	mu    sync.Mutex
	m     map[scramKey]*scramEntry
	swept time.Time        // the last sweep of idle entries
	now   func() time.Time // nil: time.Now (tests set it)
}

type scramKey struct {
	host       string // the server: accounts with the same credentials elsewhere meet other salts
	mech       Mechanism
	user, pass string
}

// scramEntry is what the last login of a key met: the salt and iteration
// count (scramFactors) and, once they repeated, the Client that holds the
// keys derived for them (nil before). A Client keeps keys for every salt
// it meets, so an entry's Client only ever meets its own factors.
type scramEntry struct {
	cl      *scram.Client
	factors string
	used    time.Time // the last login that met this entry
}

// client returns the cached Client for k, or a new one from newClient
// (the library's constructor), which saw may keep.
func (c *scramCache) client(k scramKey, newClient func() (*scram.Client, error)) (*scram.Client, error) {
	c.mu.Lock()
	e := c.m[k]
	c.mu.Unlock()
	if e != nil && e.cl != nil {
		return e.cl, nil
	}
	return newClient()
}

// saw notes that a login of k with cl met factors (see scramFactors): a
// fresh cl is kept if the last login met the same factors; a cached one
// that met others is dropped.
func (c *scramCache) saw(k scramKey, cl *scram.Client, factors string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	if now.Sub(c.swept) >= scramSweepEvery {
		c.swept = now
		for k, e := range c.m {
			if now.Sub(e.used) >= scramIdle {
				delete(c.m, k)
			}
		}
	}
	e := c.m[k]
	if e == nil {
		if c.m == nil || len(c.m) >= maxSCRAMClients {
			c.m = map[scramKey]*scramEntry{}
		}
		c.m[k] = &scramEntry{factors: factors, used: now}
		return
	}
	e.used = now
	switch {
	case e.factors != factors:
		e.cl, e.factors = nil, factors
	case e.cl == nil:
		e.cl = cl
	}
}

// scramFactors returns what the library keys a Client's derived keys by in
// a server-first-message: its salt and its iteration count. A server
// that keeps the salt and changes the count meets the cache as a changed
// salt would (see saw).
func scramFactors(ch []byte) string {
	n, _ := scramIterations(ch)
	return scramSalt(ch) + ",i=" + strconv.Itoa(n)
}

// scramSalt returns the s= attribute of a server-first-message.
func scramSalt(ch []byte) string {
	for _, f := range strings.Split(string(ch), ",") {
		if v, ok := strings.CutPrefix(f, "s="); ok {
			return v
		}
	}
	return ""
}
