package pop3

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// login runs the client side of a SCRAM-SHA-256 login of user at host up
// to the server-first-message with the given salt and iteration count,
// and returns the Client it used.
func scramLogin(t *testing.T, host, user, salt string, iters int) *scram.Client {
	t.Helper()
	s, err := newSCRAM(MechSCRAMSHA256, host, user, "pw")
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.start()
	if err != nil {
		t.Fatal(err)
	}
	_, nonce, _ := strings.Cut(string(first), ",r=")
	if _, err := s.next(fmt.Appendf(nil, "r=%sSRV,s=%s,i=%d", nonce, salt, iters)); err != nil {
		t.Fatal(err)
	}
	return s.cl
}

// TestSCRAMClientCache: a server that keeps its salt and iteration count
// gets the keys derived once: from the second login in a row that meets
// the same ones, the Client (whose derived keys the library caches) is
// kept and reused. A server that makes a new salt or count at each login
// (Dovecot with plaintext passwords) gets a fresh Client each time and
// none is kept, so it costs no memory per account; nor is one kept with
// the keys of two salts. Other servers, users or passwords never share.
func TestSCRAMClientCache(t *testing.T) {
	const salt = "QSXCR+Q6sek8bf92"
	cached := func(host, user string) *scram.Client {
		scramClients.mu.Lock()
		defer scramClients.mu.Unlock()
		if e := scramClients.m[scramKey{host, MechSCRAMSHA256, user, "pw"}]; e != nil {
			return e.cl
		}
		return nil
	}
	a := scramLogin(t, "pop.a.example", "stable", salt, 4096)
	if cached("pop.a.example", "stable") != nil {
		t.Fatal("a Client kept after one login")
	}
	b := scramLogin(t, "pop.a.example", "stable", salt, 4096)
	if b == a || cached("pop.a.example", "stable") != b {
		t.Fatal("the second login with the same salt did not keep its Client")
	}
	if c := scramLogin(t, "POP.A.example", "stable", salt, 4096); c != b {
		t.Fatal("the third login did not reuse the kept Client")
	}
	if c := scramLogin(t, "pop.b.example", "stable", salt, 4096); c == b {
		t.Fatal("another server shares the Client")
	}
	for i, f := range []struct {
		salt  string
		iters int
	}{{salt, 4097}, {"b3RoZXI=", 4097}, {"dGhpcmQ=", 4097}} {
		scramLogin(t, "pop.a.example", "stable", f.salt, f.iters)
		if cached("pop.a.example", "stable") != nil {
			t.Fatalf("change %d (salt %s, i=%d) left a Client kept", i, f.salt, f.iters)
		}
	}
	for i := range 5 {
		scramLogin(t, "pop.a.example", "random", fmt.Sprintf("c2FsdA%d=", i), 4096)
		if cached("pop.a.example", "random") != nil {
			t.Fatalf("login %d with a new salt each time kept a Client", i)
		}
	}
}

func TestSCRAMCacheBound(t *testing.T) {
	var c scramCache
	for i := range maxSCRAMClients + 10 {
		c.saw(scramKey{"h", MechSCRAMSHA256, fmt.Sprint(i), "p"}, nil, "s")
	}
	if n := len(c.m); n > maxSCRAMClients {
		t.Fatalf("%d entries; want at most %d", n, maxSCRAMClients)
	}
}

// TestSCRAMCacheIdle: an entry no login has met for scramIdle goes (an
// old password of a reloaded or removed account); one in use stays.
func TestSCRAMCacheIdle(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := scramCache{now: func() time.Time { return now }}
	old := scramKey{"h", MechSCRAMSHA256, "u", "old password"}
	cur := scramKey{"h", MechSCRAMSHA256, "u", "new password"}
	c.saw(old, nil, "s")
	c.saw(cur, nil, "s")
	now = now.Add(scramIdle - time.Hour)
	c.saw(cur, nil, "s")
	if c.m[old] == nil {
		t.Fatal("an entry was dropped before it had been idle for scramIdle")
	}
	now = now.Add(2 * time.Hour)
	c.saw(scramKey{"h", MechSCRAMSHA256, "v", "p"}, nil, "s")
	if c.m[old] != nil {
		t.Error("an entry idle for longer than scramIdle was kept")
	}
	if c.m[cur] == nil {
		t.Error("an entry in use was dropped")
	}
}

func TestSCRAMSalt(t *testing.T) {
	for in, want := range map[string]string{
		"r=abc,s=QSXCR+Q6sek8bf92,i=4096": "QSXCR+Q6sek8bf92",
		"r=abc,i=4096":                    "",
		"":                                "",
		"s=,i=1":                          "",
	} {
		if got := scramSalt([]byte(in)); got != want {
			t.Errorf("scramSalt(%q) = %q; want %q", in, got, want)
		}
	}
}
