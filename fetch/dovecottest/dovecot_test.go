package dovecottest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// client is a minimal POP3/LMTP line client: the harness is tested against
// the wire, not against popfetch's own POP3 code.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return wrap(t, c)
}

func wrap(t testing.TB, c net.Conn) *client {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns the first reply line, which must start
// with want.
func (c *client) cmd(want, format string, args ...any) string {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	l := c.line()
	if !strings.HasPrefix(l, want) {
		c.t.Fatalf("%s: reply %q; want %s…", fmt.Sprintf(format, args...), l, want)
	}
	return l
}

// multi reads a POP3 multi-line body and undoes dot-stuffing.
func (c *client) multi() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

func (c *client) login(m *Mailbox) {
	c.t.Helper()
	c.cmd("+OK", "USER %s", m.User)
	c.cmd("+OK", "PASS %s", m.Pass)
}

func pool(t testing.TB, s *Server) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(s.CAPEM) {
		t.Fatal("CAPEM holds no certificate")
	}
	return p
}

var msgs = [][]byte{
	[]byte("From: a@example.com\r\nSubject: one\r\n\r\nfirst body\r\n"),
	[]byte("From: b@example.com\nSubject: two\n\n.leading dot line\n..two dots\n.\nend\n"),
	[]byte("From: c@example.com\r\nSubject: three\r\n\r\nthird\r\n"),
}

var uidlRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestPOP3(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s := Start(t, Options{LMTP: true})
	t.Logf("Start took %v (dir %s)", time.Since(start), s.Dir)
	m := s.AddUser(t, "alice", "secret")
	m.Put(t, msgs...)
	if got := m.Count(t); got != 3 {
		t.Fatalf("Count() = %d; want 3", got)
	}

	c := dial(t, fmt.Sprintf("%s:%d", s.Host, s.PlainPort))
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	c.cmd("+OK", "CAPA")
	if capa := strings.Join(c.multi(), " "); !strings.Contains(capa, "STLS") || !strings.Contains(capa, "UIDL") {
		t.Errorf("CAPA = %q; want STLS and UIDL", capa)
	}
	c.login(m)
	if l := c.cmd("+OK", "STAT"); !strings.HasPrefix(l, "+OK 3 ") {
		t.Errorf("STAT = %q; want +OK 3 …", l)
	}
	c.cmd("+OK", "UIDL")
	uidl := c.multi()
	if len(uidl) != 3 {
		t.Fatalf("UIDL = %q; want 3 lines", uidl)
	}
	seen := map[string]bool{}
	for i, l := range uidl {
		n, uid, _ := strings.Cut(l, " ")
		if n != fmt.Sprint(i+1) || !uidlRE.MatchString(uid) || seen[uid] {
			t.Errorf("UIDL line %q: want %d and a new 16-hex-digit UID", l, i+1)
		}
		seen[uid] = true
	}
	for i, want := range msgs {
		c.cmd("+OK", "RETR %d", i+1)
		got := strings.Join(c.multi(), "\r\n") + "\r\n"
		if w := strings.ReplaceAll(strings.ReplaceAll(string(want), "\r\n", "\n"), "\n", "\r\n"); got != w {
			t.Errorf("RETR %d = %q; want %q", i+1, got, w)
		}
	}
	c.cmd("+OK", "QUIT")

	// UIDLs are stable across sessions; a user added while dovecot runs
	// can log in at once (the passwd-file is re-read).
	bob := s.AddUser(t, "bob", "hunter2")
	c = dial(t, fmt.Sprintf("%s:%d", s.Host, s.PlainPort))
	c.line()
	c.login(m)
	c.cmd("+OK", "UIDL")
	if again := c.multi(); strings.Join(again, ",") != strings.Join(uidl, ",") {
		t.Errorf("UIDL in second session = %q; want %q", again, uidl)
	}
	c.cmd("+OK", "QUIT")

	c = dial(t, fmt.Sprintf("%s:%d", s.Host, s.PlainPort))
	c.line()
	c.cmd("+OK", "USER bob")
	t0 := time.Now()
	c.cmd("-ERR", "PASS wrong")
	if d := time.Since(t0); d > time.Second {
		t.Errorf("failed PASS took %v; auth_failure_delay should be 0", d)
	}
	c.login(bob)
	if l := c.cmd("+OK", "STAT"); !strings.HasPrefix(l, "+OK 0 ") {
		t.Errorf("bob: STAT = %q; want +OK 0 …", l)
	}
	c.cmd("+OK", "QUIT")

	t.Run("STLS", func(t *testing.T) {
		c := dial(t, fmt.Sprintf("%s:%d", s.Host, s.PlainPort))
		c.line()
		c.cmd("+OK", "STLS")
		tc := tls.Client(c.conn, &tls.Config{RootCAs: pool(t, s), ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("STLS handshake: %v", err)
		}
		c = wrap(t, tc)
		c.login(m)
		c.cmd("+OK 3 ", "STAT")
		c.cmd("+OK", "QUIT")
	})

	t.Run("POP3S", func(t *testing.T) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		// The IP address SAN: clients that dial 127.0.0.1 verify as is.
		tc, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("%s:%d", s.Host, s.TLSPort), &tls.Config{RootCAs: pool(t, s)})
		if err != nil {
			t.Fatalf("POP3S: %v", err)
		}
		t.Cleanup(func() { tc.Close() })
		c := wrap(t, tc)
		c.line()
		c.login(m)
		c.cmd("+OK 3 ", "STAT")
		c.cmd("+OK", "QUIT")
	})

	t.Run("LMTP", func(t *testing.T) {
		c := dial(t, s.LMTPAddr)
		if g := c.line(); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("LMTP greeting %q", g)
		}
		c.cmd("250", "LHLO test.example")
		for l := c.line(); strings.HasPrefix(l, "250-"); l = c.line() {
		}
		c.cmd("250", "MAIL FROM:<sender@example.com>")
		c.cmd("250", "RCPT TO:<alice@example.com>")
		c.cmd("250", "RCPT TO:<bob>") // plain local part works too
		c.cmd("354", "DATA")
		c.cmd("250", "Subject: via lmtp\r\n\r\n..dot\r\nbody\r\n.")
		c.line() // one reply per RCPT
		c.cmd("221", "QUIT")
		if got := m.Count(t); got != 4 {
			t.Errorf("alice: Count() = %d after LMTP; want 4", got)
		}
		got := bob.Messages(t)
		if len(got) != 1 || !bytes.Contains(got[0], []byte("\n.dot\nbody\n")) {
			t.Errorf("bob: Messages() = %q; want the LMTP message", got)
		}
		if n, err := net.Dial("unix", s.LMTPSocket); err != nil {
			t.Errorf("LMTP socket %s: %v", s.LMTPSocket, err)
		} else {
			n.Close()
		}
	})
}

// TestParallel runs a second instance (without LMTP) beside TestPOP3's.
func TestParallel(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	if s.LMTPAddr != "" || s.LMTPSocket != "" {
		t.Errorf("LMTP set without Options.LMTP: %q %q", s.LMTPAddr, s.LMTPSocket)
	}
	m := s.AddUser(t, "carol", "pw")
	m.Put(t, msgs[0])
	c := dial(t, fmt.Sprintf("%s:%d", s.Host, s.PlainPort))
	c.line()
	c.login(m)
	c.cmd("+OK 1 ", "STAT")
	c.cmd("+OK", "QUIT")
}
