package pop3

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// TestSCRAMClientCache: logins with the same mechanism, user and password
// share one scram.Client (whose derived keys the library caches); a
// changed password or mechanism gets its own; a server that changes the
// salt leaves a fresh Client behind, so none collects salts; the cache is
// bounded.
func TestSCRAMClientCache(t *testing.T) {
	var c scramCache
	made := 0
	mk := func() (*scram.Client, error) { made++; return scram.SHA256.NewClient("u", "p", "") }
	k := scramKey{MechSCRAMSHA256, "u", "p"}
	a, _ := c.client(k, mk)
	b, _ := c.client(k, mk)
	if a != b || made != 1 {
		t.Fatalf("second login: same client %v, %d made; want the cached one", a == b, made)
	}
	if o, _ := c.client(scramKey{MechSCRAMSHA256, "u", "other"}, mk); o == a {
		t.Fatal("another password shares the client")
	}
	if o, _ := c.client(scramKey{MechSCRAMSHA1, "u", "p"}, mk); o == a {
		t.Fatal("another mechanism shares the client")
	}
	c.saw(k, a, "salt1", mk)
	c.saw(k, a, "salt1", mk)
	if got, _ := c.client(k, mk); got != a {
		t.Fatal("the same salt again replaced the client")
	}
	c.saw(k, a, "salt2", mk)
	fresh, _ := c.client(k, mk)
	if fresh == a {
		t.Fatal("a changed salt kept the client that holds both salts' keys")
	}
	c.saw(k, a, "salt3", mk) // a late conversation of the replaced client
	if got, _ := c.client(k, mk); got != fresh {
		t.Fatal("a replaced client's conversation changed the entry")
	}
	for i := range maxSCRAMClients + 10 {
		c.client(scramKey{MechSCRAMSHA256, fmt.Sprint(i), "p"}, mk)
	}
	if n := len(c.m); n > maxSCRAMClients {
		t.Fatalf("%d entries; want at most %d", n, maxSCRAMClients)
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

// TestSCRAMClientCacheIterations: the library keys its derived keys by
// salt and iteration count, so a server that keeps the salt and changes
// the iteration count at every login would grow a cached Client without
// end just as a changing salt would: such a login leaves a fresh Client
// behind too.
func TestSCRAMClientCacheIterations(t *testing.T) {
	const user = "iters-test-user"
	login := func(iters int) *scram.Client {
		t.Helper()
		s, err := newSCRAM(MechSCRAMSHA256, user, "pw")
		if err != nil {
			t.Fatal(err)
		}
		first, err := s.start()
		if err != nil {
			t.Fatal(err)
		}
		_, nonce, _ := strings.Cut(string(first), ",r=")
		ch := fmt.Sprintf("r=%sSRV,s=QSXCR+Q6sek8bf92,i=%d", nonce, iters)
		if _, err := s.next([]byte(ch)); err != nil {
			t.Fatal(err)
		}
		return s.cl
	}
	k := scramKey{MechSCRAMSHA256, user, "pw"}
	a := login(4096)
	if login(4096) != a {
		t.Fatal("the same salt and iterations again replaced the client")
	}
	login(4097)
	scramClients.mu.Lock()
	e := scramClients.m[k]
	scramClients.mu.Unlock()
	if e == nil || e.cl == a {
		t.Fatal("a changed iteration count kept the client that holds the keys of both")
	}
}
