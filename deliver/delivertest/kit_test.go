package delivertest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// send runs one transaction against addr and returns RCPT's errors and
// the error after the data (LMTP: per accepted recipient, in order).
func send(t *testing.T, addr string, lmtp bool, rcpts ...string) (rcptErrs, dataErrs []error) {
	t.Helper()
	network := "tcp"
	if lmtp && strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var c *smtp.Client
	if lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("s@x", nil); err != nil {
		return nil, []error{err}
	}
	var ok []string
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		rcptErrs = append(rcptErrs, err)
		if err == nil {
			ok = append(ok, r)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
	if !lmtp {
		return rcptErrs, []error{w.Close()}
	}
	resp, err := w.CloseWithLMTPResponse()
	var lerr smtp.LMTPDataError
	if err != nil && !errors.As(err, &lerr) {
		return rcptErrs, []error{err}
	}
	for _, r := range ok {
		if e, bad := lerr[r]; bad {
			dataErrs = append(dataErrs, e)
		} else if resp[r] == nil {
			t.Fatalf("no LMTP reply for %s", r)
		} else {
			dataErrs = append(dataErrs, nil)
		}
	}
	return rcptErrs, dataErrs
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestSinkScriptsSMTP(t *testing.T) {
	s := &Sink{}
	addr := s.Start(t, SinkOptions{})
	s.FailRcpt("b@x", SMTPError(550, "no such user"))
	re, de := send(t, addr, false, "a@x", "b@x")
	if code(re[0]) != 0 || code(re[1]) != 550 || de[0] != nil {
		t.Fatalf("RCPT %v, DATA %v; want a accepted, b 550, DATA 250", re, de)
	}
	s.FailData(SMTPError(451, "later"))
	if _, de := send(t, addr, false, "a@x"); code(de[0]) != 451 {
		t.Fatalf("DATA = %v; want 451", de)
	}
	s.Clear()
	s.FailMail(SMTPError(421, "closing"))
	if _, de := send(t, addr, false, "a@x"); code(de[0]) != 421 {
		t.Fatalf("MAIL = %v; want 421", de)
	}
	if s.Copies("a@x") != 1 || s.Copies("b@x") != 0 || s.Total() != 1 || s.Mails() != 3 {
		t.Errorf("copies a %d b %d total %d, mails %d; want 1 0 1, 3", s.Copies("a@x"), s.Copies("b@x"), s.Total(), s.Mails())
	}
	if got := s.Tried(); !slices.Equal(got, []string{"a@x", "b@x", "a@x"}) {
		t.Errorf("Tried = %v", got)
	}
	msgs := s.Messages()
	if len(msgs) != 2 || msgs[0].From != "s@x" || !slices.Equal(msgs[0].Rcpts, []string{"a@x"}) || !strings.HasSuffix(string(msgs[0].Data), "body\r\n") || msgs[0].TLS {
		t.Errorf("Messages = %+v", msgs)
	}
}

func TestSinkScriptsLMTP(t *testing.T) {
	s := &Sink{}
	afterc := make(chan string, 3)
	s.AfterStatus = func(rc string) { afterc <- rc }
	addr := s.Start(t, SinkOptions{LMTP: true, Unix: true})
	s.FailAfterData("b@x", SMTPError(452, "full"))
	_, de := send(t, addr, true, "a@x", "b@x", "c@x")
	if len(de) != 3 || de[0] != nil || code(de[1]) != 452 || de[2] != nil {
		t.Fatalf("LMTP replies %v; want 250, 452, 250", de)
	}
	var after []string
	for range 3 {
		select {
		case rc := <-afterc:
			after = append(after, rc)
		case <-time.After(5 * time.Second):
			t.Fatalf("AfterStatus ran for %v only", after)
		}
	}
	if s.Copies("a@x") != 1 || s.Copies("b@x") != 0 || s.Copies("c@x") != 1 || !slices.Equal(after, []string{"a@x", "b@x", "c@x"}) {
		t.Errorf("copies %d %d %d, AfterStatus %v", s.Copies("a@x"), s.Copies("b@x"), s.Copies("c@x"), after)
	}
	s.Forget()
	if len(s.Messages()) != 0 || s.Total() != 0 {
		t.Error("Forget kept messages")
	}
}

func TestSinkDropsAndChecks(t *testing.T) {
	s := &Sink{Check: func(b []byte) error { return SMTPError(554, "garbled") }}
	addr := s.Start(t, SinkOptions{})
	if _, de := send(t, addr, false, "a@x"); code(de[0]) != 554 {
		t.Fatalf("DATA with a failing Check = %v; want 554", de)
	}
	s.DropInData()
	if _, de := send(t, addr, false, "a@x"); de[0] == nil || code(de[0]) != 0 {
		t.Fatalf("DATA with a drop = %v; want a broken connection", de)
	}
	if s.Total() != 0 || len(s.Messages()) != 0 {
		t.Errorf("stored %d copies; want none", s.Total())
	}
}

// run runs the stub MDA for user with msg on stdin and returns its exit
// status and stderr.
func run(t *testing.T, m *MDA, user, msg string) (int, string) {
	t.Helper()
	cmd := exec.Command(m.Path, user)
	cmd.Stdin = strings.NewReader(msg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

func TestMDAStub(t *testing.T) {
	m := NewMDA(t)
	if c, _ := run(t, m, "ann", "one\n"); c != 0 {
		t.Fatalf("exit %d", c)
	}
	run(t, m, "ann", "two\n")
	m.Fail(t, "bob", "exit 75")
	if c, e := run(t, m, "bob", "x\n"); c != 75 || !strings.Contains(e, "mailbox of bob is unavailable") {
		t.Fatalf("failing bob: exit %d, stderr %q; want 75 and a reason", c, e)
	}
	m.Fail(t, "cy", "kill")
	if c, _ := run(t, m, "cy", "x\n"); c != -1 {
		t.Fatalf("killed cy: exit %d; want death by signal", c)
	}
	m.Fix(t, "bob")
	run(t, m, "bob", "three\n")
	if m.Count(t, "ann") != 2 || m.Count(t, "bob") != 1 || m.Count(t, "cy") != 0 || m.Total(t) != 3 {
		t.Errorf("counts ann %d bob %d cy %d total %d; want 2 1 0 3", m.Count(t, "ann"), m.Count(t, "bob"), m.Count(t, "cy"), m.Total(t))
	}
	got := m.Messages(t, "bob")
	if len(got) != 1 || string(got[0]) != "three\n" {
		t.Errorf("bob's messages %q", got)
	}
	if r := m.Runs(t); !slices.Equal(r, []string{"ann", "ann", "bob", "cy", "bob"}) {
		t.Errorf("Runs = %v", r)
	}
	if a := m.LastArgv(t); !slices.Equal(a, []string{m.Path, "bob"}) {
		t.Errorf("LastArgv = %q", a)
	}
}

func TestMDAStubNext(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	m := NewMDA(t, "/bin/sh", "-c", `cat > "$0"`, out+".{user}")
	run(t, m, "o'brien", "hello\n")
	if b, err := os.ReadFile(out + ".o'brien"); err != nil || string(b) != "hello\n" {
		t.Fatalf("next program wrote %q, %v", b, err)
	}
	if m.Total(t) != 0 {
		t.Error("a message served by next was also stored")
	}
}

func TestMaildirReader(t *testing.T) {
	dir := t.TempDir()
	if MaildirCount(t, dir) != 0 || Names(t, filepath.Join(dir, "nope")) != nil {
		t.Fatal("a missing Maildir holds messages")
	}
	for _, f := range []string{"new/2", "new/1", "new/.hidden", "cur/3:2,S", "tmp/4"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{filepath.Join(dir, "new/1"), filepath.Join(dir, "new/2"), filepath.Join(dir, "cur/3:2,S")}
	if got := MaildirFiles(t, dir); !slices.Equal(got, want) {
		t.Errorf("MaildirFiles = %q; want %q", got, want)
	}
	if got := MaildirMessages(t, dir, "new"); len(got) != 2 || string(got[0]) != "new/1" {
		t.Errorf("MaildirMessages(new) = %q", got)
	}
	if got := Names(t, filepath.Join(dir, "new")); len(got) != 3 {
		t.Errorf("Names(new) = %q; want the dot file too", got)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		os.WriteFile(filepath.Join(dir, "new", "5"), nil, 0o600)
	}()
	if got := WaitMaildir(t, dir, 4, 5*time.Second); len(got) != 4 {
		t.Errorf("WaitMaildir = %q", got)
	}
}

// errorsTB records what a helper reports instead of failing the test.
type errorsTB struct {
	testing.TB
	errs []string
}

func (r *errorsTB) Helper() {}

func (r *errorsTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestDuplicates(t *testing.T) {
	for _, tt := range []struct {
		name   string
		copies map[int]int
		n      int
		dups   int
		errs   []string
	}{
		{"each once", map[int]int{1: 1, 2: 1, 3: 1}, 3, 0, nil},
		{"copies counted", map[int]int{1: 1, 2: 3, 3: 2}, 3, 3, nil},
		{"lost reported", map[int]int{1: 2, 3: 1}, 4, 1, []string{"message 2 lost", "message 4 lost"}},
		{"beyond n ignored", map[int]int{1: 1, 2: 5}, 1, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &errorsTB{TB: t}
			if got := Duplicates(rec, tt.copies, tt.n); got != tt.dups || !slices.Equal(rec.errs, tt.errs) {
				t.Errorf("Duplicates = %d, reported %q; want %d, %q", got, rec.errs, tt.dups, tt.errs)
			}
		})
	}
}
