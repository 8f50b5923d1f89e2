package pop3

import (
	"strconv"
	"strings"
	"sync"

	"github.com/xdg-go/scram"
)

// scramClients keeps one scram.Client per mechanism, user and password for
// the life of the process. The library caches the keys a Client derives
// from the password and the server's salt and iteration count, and RFC
// 5802 §5.1 lets a client cache them since a server offers the same salt
// again: a daemon polling an account every few minutes then runs the
// PBKDF2 derivation (4096 iterations or more) once instead of at every
// login. At 5,000 accounts the derivation was about a quarter of an idle
// daemon's CPU.
var scramClients scramCache

// maxSCRAMClients bounds the cache: passwords changed by reloads leave
// their old entries behind, and beyond this many the cache starts afresh.
const maxSCRAMClients = 1 << 14

type scramCache struct {
	mu sync.Mutex
	m  map[scramKey]*scramEntry
}

type scramKey struct {
	mech       Mechanism
	user, pass string
}

// scramEntry is a cached Client and the salt and iteration count of the
// keys it holds ("" = none yet; see scramFactors). A Client caches keys for every salt it meets, so a server
// that changes the salt at every login (hostile, or a reset account)
// would grow it without end; an entry holds one salt, and a conversation
// that met another leaves a fresh Client behind (see saw).
type scramEntry struct {
	cl   *scram.Client
	salt string
}

// client returns the cached Client for m, user and pass, making one if
// needed; newClient is the library's constructor.
func (c *scramCache) client(k scramKey, newClient func() (*scram.Client, error)) (*scram.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		return e.cl, nil
	}
	cl, err := newClient()
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) >= maxSCRAMClients {
		c.m = map[scramKey]*scramEntry{}
	}
	c.m[k] = &scramEntry{cl: cl}
	return cl, nil
}

// saw notes that a conversation of cl met salt (scramFactors: salt and
// iteration count): the first is the entry's; another one replaces the entry's Client by a fresh one from
// newClient, so no Client is kept with more than the keys of two salts.
func (c *scramCache) saw(k scramKey, cl *scram.Client, salt string, newClient func() (*scram.Client, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || e.cl != cl {
		return // replaced or dropped meanwhile
	}
	switch {
	case e.salt == "":
		e.salt = salt
	case e.salt != salt:
		if fresh, err := newClient(); err == nil {
			c.m[k] = &scramEntry{cl: fresh}
		} else {
			delete(c.m, k)
		}
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
