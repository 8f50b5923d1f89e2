package delivertest

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Msg is one transaction a Sink received: the envelope it accepted and the
// message data.
type Msg struct {
	From  string
	Rcpts []string // the recipients whose RCPT was accepted, in order
	Data  []byte
	TLS   bool // the transaction ran over TLS (STARTTLS or implicit)
}

// SinkOptions says how Start serves a Sink.
type SinkOptions struct {
	LMTP bool
	// Unix listens on a unix socket in a temporary directory instead of
	// a loopback TCP port.
	Unix bool
	// TLS, when set, is offered with STARTTLS, or from the first byte
	// with Implicit.
	TLS      *tls.Config
	Implicit bool
	// Timeout is the server's read and write timeout; 5 s when zero.
	Timeout time.Duration
}

// Sink is an SMTP or LMTP server whose answers are scripted per stage and
// per recipient and which records what it receives. Script it with the
// Fail methods (at any time; Clear removes every fault) and read it with
// Messages, Copies and Tried. Its zero value is ready to use.
type Sink struct {
	// Check, when set before Start, judges each message's data; an error
	// is DATA's reply and the message is not stored.
	Check func(data []byte) error
	// AfterStatus, when set before Start, runs after LMTP's reply for
	// each recipient was given, before the next one's: a test can hold
	// the server there.
	AfterStatus func(rcpt string)

	mu      sync.Mutex
	mailErr error
	rcptErr map[string]error
	dataErr error
	lmtpErr map[string]error
	drop    bool
	mails   int
	tried   []string
	msgs    []Msg
	copies  map[string]int
}

// SMTPError is a reply with code and message, for the Fail methods; its
// enhanced code is code's class with zeros (4.0.0, 5.0.0).
func SMTPError(code int, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: msg}
}

// FailMail makes MAIL FROM answer err (nil: accept).
func (s *Sink) FailMail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailErr = err
}

// FailRcpt makes RCPT TO for addr answer err (nil: accept).
func (s *Sink) FailRcpt(addr string, err error) { s.setFault(&s.rcptErr, addr, err) }

// FailData makes SMTP's one reply after the data err: no recipient gets
// the message.
func (s *Sink) FailData(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataErr = err
}

// FailAfterData makes LMTP's reply for addr after the data err.
func (s *Sink) FailAfterData(addr string, err error) { s.setFault(&s.lmtpErr, addr, err) }

func (s *Sink) setFault(m *map[string]error, addr string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *m == nil {
		*m = map[string]error{}
	}
	(*m)[addr] = err
}

// DropInData makes the server close the connection in the middle of the
// message data, with no reply to the final dot and nothing stored.
func (s *Sink) DropInData() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = true
}

// Clear removes every fault; what was received stays.
func (s *Sink) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailErr, s.dataErr, s.drop = nil, nil, false
	clear(s.rcptErr)
	clear(s.lmtpErr)
}

// Messages returns every transaction received, in order, including those
// whose LMTP replies failed some recipients.
func (s *Sink) Messages() []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// Forget drops the transactions and copies received so far (a benchmark's
// memory); faults and the counts of Mails and Tried stay.
func (s *Sink) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = s.msgs[:0]
	clear(s.copies)
}

// Mails counts the MAIL commands received.
func (s *Sink) Mails() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mails
}

// Copies counts the copies accepted for addr: the message data arrived
// and addr's reply to it was success.
func (s *Sink) Copies(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copies[addr]
}

// Total counts the copies accepted for all addresses.
func (s *Sink) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.copies {
		n += c
	}
	return n
}

// Tried returns every RCPT TO address received, in order, whatever the
// reply; TriedSince(n) those after the first n.
func (s *Sink) Tried() []string { return s.TriedSince(0) }

// TriedSince returns the RCPT TO addresses received after the first n.
func (s *Sink) TriedSince(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tried[n:])
}

// Start serves s on loopback until the test ends and returns its address
// (host:port, or the socket's path with o.Unix).
func (s *Sink) Start(t testing.TB, o SinkOptions) string {
	t.Helper()
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.LMTP = o.LMTP
	srv.TLSConfig = o.TLS
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	srv.ReadTimeout = o.Timeout
	srv.WriteTimeout = o.Timeout
	srv.ErrorLog = log.New(io.Discard, "", 0) // a dropped connection makes it complain
	var l net.Listener
	var err error
	if o.Unix {
		l, err = net.Listen("unix", filepath.Join(t.TempDir(), "sink.sock"))
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	if o.Implicit {
		l = tls.NewListener(l, o.TLS)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// NewSession implements smtp.Backend.
func (s *Sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{sink: s, conn: c}, nil
}

type sinkSession struct {
	sink *Sink
	conn *smtp.Conn
	cur  Msg
}

func (s *sinkSession) Reset()        { s.cur = Msg{} }
func (s *sinkSession) Logout() error { return nil }

func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.sink.mu.Lock()
	s.sink.mails++
	err := s.sink.mailErr
	s.sink.mu.Unlock()
	if err != nil {
		return err
	}
	_, tls := s.conn.TLSConnectionState()
	s.cur = Msg{From: from, TLS: tls}
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.sink.mu.Lock()
	s.sink.tried = append(s.sink.tried, to)
	err := s.sink.rcptErr[to]
	s.sink.mu.Unlock()
	if err != nil {
		return err
	}
	s.cur.Rcpts = append(s.cur.Rcpts, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error { return s.receive(r, nil) }

func (s *sinkSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	return s.receive(r, status)
}

// receive takes the message data; status is nil for SMTP, whose one reply
// covers every recipient.
func (s *sinkSession) receive(r io.Reader, status smtp.StatusCollector) error {
	s.sink.mu.Lock()
	drop := s.sink.drop
	s.sink.mu.Unlock()
	if drop {
		// Some of the data has arrived; then the connection is gone.
		io.ReadFull(r, make([]byte, 16))
		s.conn.Conn().Close()
		return errors.New("connection dropped by the test")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.sink.Check != nil {
		if err := s.sink.Check(b); err != nil {
			return err
		}
	}
	s.cur.Data = b
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, s.cur)
	if s.sink.copies == nil {
		s.sink.copies = map[string]int{}
	}
	if status == nil {
		err := s.sink.dataErr
		if err == nil {
			for _, rc := range s.cur.Rcpts {
				s.sink.copies[rc]++
			}
		}
		s.sink.mu.Unlock()
		return err
	}
	s.sink.mu.Unlock()
	for _, rc := range s.cur.Rcpts {
		s.sink.mu.Lock()
		err := s.sink.lmtpErr[rc]
		if err == nil {
			s.sink.copies[rc]++
		}
		s.sink.mu.Unlock()
		status.SetStatus(rc, err)
		if s.sink.AfterStatus != nil {
			s.sink.AfterStatus(rc)
		}
	}
	return nil
}
