package interop

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/rcfile"
	"github.com/popfetch/popfetch/uidl"
)

// listUIDs lists the server's UIDL with a plain session of its own.
func listUIDs(t *testing.T, s *Server) []string {
	c, err := net.Dial("tcp", fmt.Sprintf("localhost:%d", s.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	line := func() string { l, _ := r.ReadString('\n'); return strings.TrimRight(l, "\r\n") }
	line()
	fmt.Fprintf(c, "USER %s\r\n", s.User)
	line()
	fmt.Fprintf(c, "PASS %s\r\n", s.Pass)
	if l := line(); !strings.HasPrefix(l, "+OK") {
		t.Fatal(l)
	}
	fmt.Fprintf(c, "UIDL\r\n")
	line()
	var out []string
	for l := line(); l != "."; l = line() {
		out = append(out, l)
	}
	fmt.Fprintf(c, "QUIT\r\n")
	line()
	return out
}

// TestV1RecipientsSharedUID: a format 1 journal's "r" record (no
// identity), left by an older popfetch killed during a multidrop delivery,
// does not count for a UID the server lists more than once (popa3d and
// solid-pop3d give messages with the same Date, Message-ID and Subject one
// UID). Before, it counted for every message under that UID, so user a
// never got message N, which was then deleted from the server.
func TestV1RecipientsSharedUID(t *testing.T) {
	for _, c := range configs {
		if c.name != "popa3d" && c.name != "solid-pop3d" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			s := c.start(t)
			hdr := "From: x@example.net\nTo: a@example.com, b@example.com\nSubject: same\nDate: Thu, 01 Jan 2026 00:00:00 +0000\nMessage-ID: <same@example.net>\n"
			m := []byte(hdr + "X-Seq: M\n\nfirst message\n")
			n := []byte(hdr + "X-Seq: N\n\nsecond, different message body\n")
			s.Put(t, m, n)
			ul := listUIDs(t, s)
			if len(ul) != 2 || strings.Fields(ul[0])[1] != strings.Fields(ul[1])[1] {
				t.Fatalf("UIDL %q: want two messages under one UID (the premise of this test)", ul)
			}
			uid := strings.Fields(ul[0])[1]
			a := account(t, s)
			dir := filepath.Dir(a.StateDir)
			a.Deliver = rcfile.Destination{Maildir: filepath.Join(dir, "out", "{user}")}
			a.Multidrop = &rcfile.Multidrop{LocalDomains: []string{"example.com"}, FallbackHeaders: []string{"To"},
				Users: []*rcfile.User{{Name: "a", Addresses: []string{"a"}}, {Name: "b", Addresses: []string{"b"}}}}
			// The old popfetch (format 1) was killed after delivering M to a.
			p := uidl.Path(a.StateDir, a.Mailbox())
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("popfetch-uidl 1\nr "+uid+" 1700000000 u:a\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if res := poll(t, s, a); res.Err != nil {
					t.Fatalf("poll %d: %v", i+1, res.Err)
				}
			}
			for _, u := range []string{"a", "b"} {
				var seqs []string
				for _, b := range delivertest.MaildirMessages(t, filepath.Join(dir, "out", u), "new") {
					_, rest, _ := strings.Cut(string(b), "X-Seq: ")
					seq, _, _ := strings.Cut(rest, "\n")
					seqs = append(seqs, seq)
				}
				t.Logf("user %s got %v", u, seqs)
				if u == "a" && !strings.Contains(strings.Join(seqs, ","), "N") {
					t.Errorf("user a never got message N; server now holds %d messages", s.Count(t))
				}
			}
		})
	}
}
