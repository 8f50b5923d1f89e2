package deliver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/popfetch/popfetch/internal/sockpeek"
)

// SMTPOptions configures an SMTP or LMTP target. The zero value of every
// field but Addr is usable.
type SMTPOptions struct {
	// Addr is "host:port", or an absolute path for a unix socket (the
	// usual way to reach an LMTP server such as dovecot-lmtp).
	Addr string
	// LMTP speaks RFC 2033: LHLO, and one reply per recipient after DATA.
	LMTP bool
	// Helo is the name in EHLO/LHLO; default os.Hostname(), also in the
	// EHLO before STARTTLS.
	Helo string
	// TLS is "none" (the default), "starttls" or "implicit". With
	// "starttls" a server that does not offer STARTTLS is an error, never
	// a fallback to plain text. Certificates are always verified, against
	// RootCAs or the system pool, for the host part of Addr.
	TLS     string
	RootCAs *x509.CertPool
	// Sender is the envelope sender (MAIL FROM). "" uses the sender given
	// to Deliver, then the message's Return-Path if it parses as an
	// address, then the null path <>.
	Sender string
	// Timeout bounds connecting and each command's reply, and each write
	// of message data. Default 5 minutes (RFC 5321 §4.5.3.2).
	Timeout time.Duration
	// FinalTimeout bounds the wait for the reply(ies) to the final dot.
	// Default 10 minutes, and never shorter than Timeout: the server is
	// committing the message, and giving up early produces duplicates
	// (RFC 5321 §4.5.3.2.6, RFC 1047).
	FinalTimeout time.Duration
	// LocalHost is the "by" host of the Received: field; default
	// os.Hostname().
	LocalHost string
}

// SMTP delivers to an SMTP or LMTP server: one connection and one
// transaction per message, one RCPT per distinct recipient address.
type SMTP struct {
	opts   SMTPOptions
	proto  string // "SMTP" or "LMTP", for reasons
	target string
	cfgErr error // a bad option, reported (temporary) on every delivery
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
}

// maxReplyBytes bounds everything a server may send us on one connection
// (on top of a per-recipient allowance): go-smtp bounds a reply line (2000
// bytes), but not the number of lines in a multiline reply, which
// net/textproto joins in memory (doc/design.md §3.6, fetchmail CVE-2025-61962,
// Go CVE-2025-61724). A reply cut off by either limit is an i/o error,
// never a success.
const maxReplyBytes = 1 << 20

// NewSMTP returns an SMTP/LMTP target. Option errors are not returned
// here but by every Deliver, as temporary failures: a misconfigured
// target must leave the mail on the POP3 server.
func NewSMTP(opts SMTPOptions) *SMTP {
	d := &SMTP{proto: "SMTP"}
	if opts.LMTP {
		d.proto = "LMTP"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.FinalTimeout <= 0 {
		opts.FinalTimeout = 10 * time.Minute
	}
	opts.FinalTimeout = max(opts.FinalTimeout, opts.Timeout)
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	if opts.Helo == "" {
		opts.Helo = host
	}
	if opts.LocalHost == "" {
		opts.LocalHost = host
	}
	if opts.TLS == "" {
		opts.TLS = "none"
	}
	d.opts = opts
	network := "tcp"
	if strings.HasPrefix(opts.Addr, "/") {
		network = "unix"
	}
	d.target = strings.ToLower(d.proto) + " " + network + ":" + opts.Addr
	d.cfgErr = d.checkOptions(network)
	var dialer net.Dialer
	d.dial = dialer.DialContext
	return d
}

func (d *SMTP) checkOptions(network string) error {
	o := d.opts
	if o.Addr == "" {
		return errors.New("no server address")
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(o.Addr); err != nil {
			return fmt.Errorf("server address %q: %w", o.Addr, err)
		}
	}
	switch o.TLS {
	case "none":
	case "starttls", "implicit":
		if network == "unix" {
			return fmt.Errorf("tls %q over a unix socket: no host name to verify", o.TLS)
		}
		if o.LMTP && o.TLS == "starttls" {
			return errors.New("STARTTLS with LMTP is not supported (use implicit TLS or a unix socket)")
		}
	default:
		return fmt.Errorf("tls %q: want none, starttls or implicit", o.TLS)
	}
	if o.Helo == "" || strings.ContainsFunc(o.Helo, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("helo name %q is not a host name", o.Helo)
	}
	if o.Sender != "" {
		if err := checkEnvelopeAddr(o.Sender); err != nil {
			return fmt.Errorf("sender: %w", err)
		}
	}
	return nil
}

// checkEnvelopeAddr rejects what must never reach MAIL FROM or RCPT TO:
// control characters (CR/LF would inject commands), angle brackets (they
// would close the path and add parameters), spaces outside a quoted local
// part, invalid UTF-8 and absurd lengths. go-smtp checks CR/LF too.
func checkEnvelopeAddr(a string) error {
	if a == "" {
		return errors.New("empty address")
	}
	if len(a) > 512 {
		return errors.New("address longer than 512 bytes")
	}
	if !utf8.ValidString(a) {
		return errors.New("address is not valid UTF-8")
	}
	quoteEnd := -1
	if a[0] == '"' {
		quoteEnd = strings.LastIndexByte(a, '"')
	}
	for i := 0; i < len(a); i++ {
		switch c := a[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("address %q contains a control character", SafeValue(a, 100))
		case c == '<' || c == '>':
			return fmt.Errorf("address %q contains an angle bracket", a)
		case c == ' ' && i > quoteEnd:
			return fmt.Errorf("address %q contains a space", a)
		}
	}
	return nil
}

// envelopeSender picks MAIL FROM; "" is the null path. The configured
// Sender was validated by NewSMTP; a sender from the message that fails
// validation is skipped rather than failing the delivery, because MAIL
// FROM only says where bounces go.
func (d *SMTP) envelopeSender(m *Message, sender string) string {
	if d.opts.Sender != "" {
		return d.opts.Sender
	}
	if sender != "" && sender != "<>" && checkEnvelopeAddr(sender) == nil {
		return sender
	}
	if rp := ReturnPath(m.Head()); rp != "" && checkEnvelopeAddr(rp) == nil {
		return rp
	}
	return ""
}

// wireConn is the connection under go-smtp. It enforces a byte budget on
// what the server sends, and while clampDeadline is set it shortens the
// deadlines go-smtp sets itself (NewClientStartTLS greets with its own
// 5-minute default before we can set CommandTimeout).
type wireConn struct {
	net.Conn
	budget        int64
	clampDeadline time.Duration
	// top is the connection go-smtp reads from and writes to, above TLS:
	// its replyTap sees every byte of the session.
	top *tapConn
}

var errReplyBudget = errors.New("server sent more reply data than any transaction needs")

func (c *wireConn) Read(p []byte) (int, error) {
	if c.budget <= 0 {
		return 0, errReplyBudget
	}
	if int64(len(p)) > c.budget {
		p = p[:c.budget]
	}
	n, err := c.Conn.Read(p)
	c.budget -= int64(n)
	return n, err
}

func (c *wireConn) SetDeadline(t time.Time) error {
	if c.clampDeadline > 0 && !t.IsZero() {
		if limit := time.Now().Add(c.clampDeadline); t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetDeadline(t)
}

// dataWriter gives every write of message data its own deadline: go-smtp
// sets none between the 354 reply and the final dot, so a server that
// stops reading would hang us forever.
type dataWriter struct {
	w       io.Writer
	conn    net.Conn
	timeout time.Duration
}

func (w *dataWriter) Write(p []byte) (int, error) {
	w.conn.SetDeadline(time.Now().Add(w.timeout))
	return w.w.Write(p)
}

// connect dials, sets up TLS as configured and says hello.
//
// go-smtp has no context: cancellation closes the connection, which fails
// whatever command is in progress. The returned stop function undoes that
// hook; connect calls it itself on failure.
func (d *SMTP) connect(ctx context.Context, rcpts int) (c *smtp.Client, wc *wireConn, stop func() bool, err error) {
	network := "tcp"
	if strings.HasPrefix(d.opts.Addr, "/") {
		network = "unix"
	}
	dctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	raw, err := d.dial(dctx, network, d.opts.Addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect: %w", err)
	}
	hook := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		if err != nil {
			hook()
			raw.Close()
		}
	}()
	wc = &wireConn{Conn: raw, budget: maxReplyBytes + int64(rcpts)*1024, clampDeadline: d.opts.Timeout}
	var conn net.Conn = wc
	var tlsConfig *tls.Config
	if d.opts.TLS != "none" {
		host, _, _ := net.SplitHostPort(d.opts.Addr)
		tlsConfig = &tls.Config{ServerName: host, RootCAs: d.opts.RootCAs, MinVersion: tls.VersionTLS12}
	}
	top := &tapConn{tap: newReplyTap(), raw: raw}
	switch d.opts.TLS {
	case "implicit":
		tc := tls.Client(wc, tlsConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, nil, nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	case "starttls":
		// popfetch runs STARTTLS itself rather than through go-smtp, so
		// that the tap sits above TLS as in the other modes. A server that
		// does not offer STARTTLS or refuses it is an error: no downgrade
		// to plain text.
		tc, err := d.startTLS(dctx, wc, tlsConfig)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("starttls required: %w", err)
		}
		conn = tc
		// RFC 3207 §4.2: the session starts over after the handshake,
		// without a new greeting; go-smtp wants one.
		top.pre = []byte("220 TLS started\r\n")
	}
	top.Conn = conn
	wc.top = top
	if d.opts.LMTP {
		c = smtp.NewClientLMTP(top)
	} else {
		c = smtp.NewClient(top)
	}
	c.CommandTimeout = d.opts.Timeout
	c.SubmissionTimeout = d.opts.FinalTimeout
	wc.clampDeadline = 0
	if err := c.Hello(d.opts.Helo); err != nil {
		return nil, nil, nil, fmt.Errorf("hello: %w", err)
	}
	return c, wc, hook, nil
}

// startTLS greets, says EHLO and runs STARTTLS (RFC 3207) on wc, then the
// TLS handshake. Nothing may follow the server's 220 to STARTTLS before
// the handshake: such bytes would be read as if they came over TLS
// (STARTTLS response injection, CVE-2021-22947, CVE-2020-14954).
func (d *SMTP) startTLS(ctx context.Context, wc *wireConn, cfg *tls.Config) (*tls.Conn, error) {
	wc.SetDeadline(time.Now().Add(d.opts.Timeout))
	defer wc.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(wc, 4096)
	tr := textproto.NewReader(br)
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := io.WriteString(wc, "EHLO "+d.opts.Helo+"\r\n"); err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	_, msg, err := tr.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	offered := false
	for _, l := range strings.Split(msg, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return nil, errors.New("server does not offer STARTTLS")
	}
	if _, err := io.WriteString(wc, "STARTTLS\r\n"); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if br.Buffered() > 0 {
		return nil, errors.New("server sent data after its reply to STARTTLS")
	}
	tc := tls.Client(wc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// rcptGroup is one distinct RCPT address and the recipients it serves.
type rcptGroup struct {
	addr string
	idx  []int
}

// rcptAddr is the RCPT address of a local recipient: the user at the
// domain the message was routed by (alice@example.com), which an LMTP
// server such as dovecot maps to the mailbox of alice, rather than the
// address in the header (sales@example.com, an alias the LMTP server does
// not know: routing to alice is popfetch's decision). A single-drop account
// has no domain: its Address, else the user name.
func rcptAddr(r Recipient) string {
	switch {
	case r.User != "" && r.Domain != "":
		return r.User + "@" + r.Domain
	case r.Address != "":
		return r.Address
	}
	return r.User
}

// soleAddress is the routed address of a transaction's only RCPT, or ""
// when its recipients have none (single-drop, postmaster) or disagree.
func soleAddress(rcpts []Recipient, g *rcptGroup) string {
	a := rcpts[g.idx[0]].Address
	for _, i := range g.idx[1:] {
		if rcpts[i].Address != a {
			return ""
		}
	}
	return a
}

// Deliver sends one copy of m (extra, a Received: field, Delivered-To: when
// there is exactly one RCPT and it has a routed address, then the message
// with every line ending normalised to CRLF) in one transaction, with one
// RCPT per distinct address (see rcptAddr).
//
// Per-recipient results: a rejected RCPT gives that recipient a temporary
// (4xx) or permanent (5xx) error; after DATA, SMTP gives one result for
// all accepted recipients and LMTP one per recipient. A dropped
// connection, a timeout, a garbled reply or ctx cancellation is temporary
// for every recipient not yet confirmed; nil is returned only after a 250
// reply to the final dot for that recipient, read with the session in step
// (see replyTap): a server out of step makes every result temporary.
func (d *SMTP) Deliver(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field) []error {
	return d.DeliverReporting(ctx, m, sender, rcpts, extra, nil)
}

// DeliverReporting is Deliver, passing each recipient's result to report
// as soon as it is final (see ResultFunc).
func (d *SMTP) DeliverReporting(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field, report ResultFunc) []error {
	res := newResults(len(rcpts), report)
	errs := res.errs
	var groups []*rcptGroup
	byAddr := make(map[string]*rcptGroup)
	for i, r := range rcpts {
		a := rcptAddr(r)
		if err := checkEnvelopeAddr(a); err != nil {
			errs[i] = &Error{Target: d.target, Permanent: true, Reason: SafeValue("invalid recipient: "+err.Error(), 200), Err: err}
			continue
		}
		// The same address twice would be delivered twice.
		g := byAddr[a]
		if g == nil {
			g = &rcptGroup{addr: a}
			byAddr[a] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	set := func(g *rcptGroup, err error) {
		for _, i := range g.idx {
			errs[i] = err
		}
	}
	setAll := func(gs []*rcptGroup, err error) {
		for _, g := range gs {
			set(g, err)
		}
	}
	if len(groups) == 0 {
		return res.done()
	}
	if d.cfgErr != nil {
		setAll(groups, &Error{Target: d.target, Reason: SafeValue("configuration: "+d.cfgErr.Error(), 200), Err: d.cfgErr})
		return res.done()
	}
	if err := ctx.Err(); err != nil {
		setAll(groups, d.classify(ctx, "connect", err))
		return res.done()
	}

	c, wc, stop, err := d.connect(ctx, len(groups))
	if err != nil {
		// Whatever the greeting or EHLO said (even 554), it is about the
		// server, not this message: temporary.
		e := d.classify(ctx, "", err)
		e.Permanent = false
		setAll(groups, e)
		return res.done()
	}
	defer stop()
	defer c.Close()
	quit := func() {
		// The results are known; a server that dawdles over QUIT must not
		// hold up the poll for a whole command timeout.
		c.CommandTimeout = min(d.opts.Timeout, 5*time.Second)
		c.Quit()
	}

	from := d.envelopeSender(m, sender)
	fields := append([]Field(nil), extra...)
	forAddr, deliveredTo := "", ""
	if len(groups) == 1 {
		// RFC 5321 §4.4: "for" names one recipient only; with several it
		// would disclose Bcc recipients to each other.
		forAddr = groups[0].addr
		deliveredTo = soleAddress(rcpts, groups[0])
	}
	if !m.Local {
		fields = append(fields, Received(m, d.opts.LocalHost, forAddr))
	}
	if deliveredTo != "" {
		// As on Maildir and MDA copies: the address that routed the
		// message, which popfetch's loop check finds again if the copy
		// comes back. With several recipients one copy serves them all
		// and cannot name each; an LMTP server such as dovecot adds its
		// own Delivered-To per recipient.
		fields = append(fields, Field{Name: "Delivered-To", Value: SafeValue(deliveredTo, 320)})
	}

	mailOpts := &smtp.MailOptions{Size: copySize(m, fields)}
	needUTF8 := !isASCIIString(from)
	for _, g := range groups {
		needUTF8 = needUTF8 || !isASCIIString(g.addr)
	}
	if needUTF8 {
		// RFC 6531: non-ASCII addresses need SMTPUTF8 downstream; without
		// it the message goes to the postmaster (doc/design.md §5.5).
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			setAll(groups, &Error{Target: d.target, Permanent: true, Reason: d.proto + " server lacks SMTPUTF8 for a non-ASCII address"})
			quit()
			return res.done()
		}
		mailOpts.UTF8 = true
	}
	if err := c.Mail(from, mailOpts); err != nil {
		setAll(groups, d.classify(ctx, "MAIL", err))
		if isReply(err) {
			quit()
		}
		return res.done()
	}
	var accepted []*rcptGroup
	for i, g := range groups {
		if err := c.Rcpt(g.addr, nil); err != nil {
			e := d.classify(ctx, "RCPT", err)
			if !isReply(err) {
				// The connection is gone: the transaction cannot complete
				// for those already accepted nor for those still to come.
				setAll(accepted, e)
				setAll(groups[i:], e)
				return res.done()
			}
			set(g, e)
			continue
		}
		accepted = append(accepted, g)
	}
	if len(accepted) == 0 {
		quit()
		return res.done()
	}

	w, err := c.Data()
	if err != nil {
		setAll(accepted, d.classify(ctx, "DATA", err))
		if isReply(err) {
			quit()
		}
		return res.done()
	}
	// Every reply so far answered its command, and nothing more has come:
	// a stray reply here would be taken for the reply to the final dot.
	top := wc.top
	top.tap.inData = true
	if err := top.inStep(); err != nil {
		setAll(accepted, d.classify(ctx, "DATA", err))
		return res.done()
	}
	// Open normalises every bare CR and LF to CRLF before go-smtp's
	// DotWriter dot-stuffs, so no "\n.\n" or "\r.\r" can end the data
	// early at a lenient server (SMTP smuggling, CVE-2023-51764).
	if _, err := io.Copy(&dataWriter{w: w, conn: wc, timeout: d.opts.Timeout}, Open(m, fields, false)); err != nil {
		setAll(accepted, d.classify(ctx, "sending message data", err))
		return res.done()
	}
	// No reply is due while the data goes out (the final dot is still in
	// go-smtp's buffer): one that came now would be taken for the reply
	// to the final dot.
	if err := top.inStep(); err != nil {
		setAll(accepted, d.classify(ctx, "sending message data", err))
		return res.done()
	}

	// The final replies: one for SMTP, one per accepted RCPT in order for
	// LMTP. A recipient is delivered only if go-smtp and the tap agree on
	// its reply (a 250 from both), and the session is still in step after
	// the last reply: a reply that was not due, a missing one or bytes
	// after the last one mean go-smtp may have matched a reply with the
	// wrong command, and then no result of the transaction can be trusted.
	//
	// An LMTP 250 that names in angle brackets exactly the recipient it is
	// due for (dovecot: "250 2.0.0 <alice@example.com> ... Saved"), read
	// with the session in step so far, is reported at once: a reply
	// shifted by a stray would name another recipient or none. The
	// delivery of hundreds of users can take a while, and a popfetch killed
	// meanwhile must not serve those already confirmed again. A 250 that
	// names no recipient is held until the last reply is in and nothing
	// follows it. A reply that names another recipient instead of its own
	// puts the session out of step.
	type reply struct {
		code int
		text string
	}
	var finals []reply
	want := 1
	if d.opts.LMTP {
		want = len(accepted)
	}
	first := top.tap.n
	early := make([]bool, len(accepted))
	var own map[string]int
	if d.opts.LMTP {
		own = lmtpOwn(accepted)
	}
	top.tap.onReply = func(k, code int, text string) {
		if k < first {
			return
		}
		finals = append(finals, reply{code, text})
		j := k - first
		if !d.opts.LMTP || j >= len(accepted) {
			return // one too many: the tap is out of step already
		}
		mine, other := lmtpNames(own, j, text)
		switch {
		case other >= 0 && !mine:
			top.tap.outOfStep(fmt.Sprintf("LMTP reply %d names <%s>, expected <%s>", j, accepted[other].addr, accepted[j].addr))
		case mine && other < 0 && code == 250 && top.tap.stray == "":
			early[j] = true
			for _, i := range accepted[j].idx {
				res.delivered(i, d.receipt(text))
				res.report(i, nil)
			}
		}
	}
	top.tap.due += want
	var (
		resp    map[string]*smtp.DataResponse
		perRcpt smtp.LMTPDataError
	)
	if d.opts.LMTP {
		resp, err = w.CloseWithLMTPResponse()
		errors.As(err, &perRcpt)
	} else {
		// One reply for every accepted recipient.
		var r *smtp.DataResponse
		r, err = w.CloseWithResponse()
		var se *smtp.SMTPError
		errors.As(err, &se)
		resp, perRcpt = map[string]*smtp.DataResponse{}, smtp.LMTPDataError{}
		for _, g := range accepted {
			if err == nil {
				resp[g.addr] = r
			} else if se != nil {
				perRcpt[g.addr] = se
			}
		}
	}
	top.tap.inData = false
	top.tap.onReply = nil
	// The connection failed (not a reply): what was read is all there is.
	_, onlyReplies := err.(smtp.LMTPDataError)
	ioFailed := err != nil && !onlyReplies && !(!d.opts.LMTP && isReply(err))
	var stepErr error
	if !ioFailed {
		stepErr = top.inStep()
	} else if top.tap.stray != "" {
		stepErr = fmt.Errorf("server out of step: %s", top.tap.stray)
	}
	for k, g := range accepted {
		if !d.opts.LMTP {
			k = 0
		}
		tapCode := 0
		if k < len(finals) {
			tapCode = finals[k].code
		}
		se := perRcpt[g.addr]
		switch {
		case d.opts.LMTP && early[k]:
			// Its own 250, naming it, in step when it came: reported
			// (and recorded by the caller) already.
			set(g, nil)
		case stepErr != nil:
			set(g, d.classify(ctx, "final dot", stepErr))
		case resp[g.addr] != nil && tapCode == 250:
			for _, i := range g.idx {
				res.delivered(i, d.receipt(finals[k].text))
			}
			set(g, nil)
		case se != nil && tapCode == se.Code:
			set(g, d.classify(ctx, "final dot", se))
		case ioFailed:
			set(g, d.classify(ctx, "final dot", lmtpFailure(err)))
		default:
			stepErr = fmt.Errorf("server out of step: go-smtp and the reply tap disagree on reply %d", k)
			set(g, d.classify(ctx, "final dot", stepErr))
		}
	}
	// Reported before QUIT, which may take its time: the copies are
	// durable now.
	res.done()
	if !ioFailed && stepErr == nil {
		quit()
	}
	return res.done()
}

// receipt is the Receipt of a copy the server accepted with the final
// reply reply (as the reply tap read it: its lines, codes included,
// joined by LF).
func (d *SMTP) receipt(reply string) Receipt {
	return Receipt{Kind: strings.ToLower(d.proto), Dest: d.opts.Addr, Reply: strings.TrimSpace(reply)}
}

// lmtpOwn maps each accepted address, in lower case, to its index; an
// address accepted twice in different case maps to -1: a reply naming it
// could be either's.
func lmtpOwn(accepted []*rcptGroup) map[string]int {
	own := make(map[string]int, len(accepted))
	for k, g := range accepted {
		a := strings.ToLower(g.addr)
		if _, dup := own[a]; dup {
			own[a] = -1
			continue
		}
		own[a] = k
	}
	return own
}

// lmtpNames reports which accepted recipients the text of LMTP reply k
// names in angle brackets: whether it names accepted[k] (mine), and one
// other accepted recipient it names (other, or -1).
func lmtpNames(own map[string]int, k int, t string) (mine bool, other int) {
	other = -1
	for {
		i := strings.IndexByte(t, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(t[i:], '>')
		if j < 0 {
			break
		}
		if o, ok := own[strings.ToLower(t[i+1:i+j])]; ok && o >= 0 {
			if o == k {
				mine = true
			} else {
				other = o
			}
		}
		t = t[i+j:]
	}
	return mine, other
}

// lmtpFailure returns what ended the LMTP replies early. go-smtp joins it
// with the replies received so far (an LMTPDataError), which must not be
// passed on: classify would find another recipient's 5xx in it and call
// this recipient's failure permanent.
func lmtpFailure(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if _, isReplies := err.(smtp.LMTPDataError); !isReplies {
			for _, e := range j.Unwrap() {
				if _, isReplies := e.(smtp.LMTPDataError); !isReplies {
					return e
				}
			}
		}
	}
	if err == nil || errors.As(err, new(smtp.LMTPDataError)) {
		return errors.New("no reply for this recipient")
	}
	return err
}

// isReply reports whether err is the server's answer (the session is
// still in step), as opposed to an i/o or protocol failure.
func isReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// classify turns a failure into an *Error: a 5xx reply is permanent,
// everything else (4xx, odd codes, i/o errors, timeouts, garbled replies,
// cancellation) temporary.
func (d *SMTP) classify(ctx context.Context, stage string, err error) *Error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &Error{Target: d.target, Permanent: se.Code/100 == 5, Reason: d.replyReason(se), Err: err}
	}
	prefix := ""
	if stage != "" {
		prefix = stage + ": "
	}
	if cerr := ctx.Err(); cerr != nil {
		return &Error{Target: d.target, Reason: prefix + "delivery cancelled", Err: fmt.Errorf("%w (%v)", context.Cause(ctx), err)}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		limit := d.opts.Timeout
		if stage == "final dot" {
			limit = d.opts.FinalTimeout
		}
		return &Error{Target: d.target, Reason: fmt.Sprintf("%stimed out after %v", prefix, limit), Err: err}
	}
	return &Error{Target: d.target, Reason: reasonText(prefix + err.Error()), Err: err}
}

// replyReason renders a server reply for X-Popfetch-Reason and logs, e.g.
// "SMTP 550 5.1.1 no such user": one line, control characters removed.
func (d *SMTP) replyReason(se *smtp.SMTPError) string {
	s := fmt.Sprintf("%s %d", d.proto, se.Code)
	if ec := se.EnhancedCode; ec[0] > 0 {
		s += fmt.Sprintf(" %d.%d.%d", ec[0], ec[1], ec[2])
	}
	if msg := strings.TrimSpace(se.Message); msg != "" {
		s += " " + msg
	}
	return reasonText(s)
}

// reasonText makes s a reason: one line of at most 200 bytes of valid
// UTF-8 without control characters. SafeValue keeps a TAB, which a header
// field may hold; a reason is also a log value and a table cell, where a
// TAB from the server would misalign what the admin reads.
func reasonText(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(SafeValue(s, 200), "\t", " "), "?")
}

// copySize is the size of the CRLF copy, for the SIZE parameter (RFC
// 1870) so a server can refuse an oversized message before the data.
func copySize(m *Message, fields []Field) int64 {
	n, _ := io.Copy(io.Discard, Open(m, fields, false))
	return n
}

func isASCIIString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// replyTap follows the session in the bytes go-smtp reads and writes, so
// that every reply is counted against the command it answers. It parses
// replies exactly as net/textproto's ReadResponse under go-smtp's
// lineLimitReader (a reply ends at a line "ddd " with its first line's
// code; a line that is not "ddd-" or "ddd " with that code continues it; a
// read holding a line over 2000 bytes fails whole), so the k-th reply it
// sees is the k-th go-smtp reads, with the same code. Each command line the
// client writes outside message data makes one reply due; a reply or any
// byte that arrives when none is due puts the session out of step for good
// (stray). go-smtp alone would take such a reply as the answer to the next
// command (a stray 250 after 354 as the reply to the final dot) and every
// later reply as the answer to the command before it.
type replyTap struct {
	// onReply, if set, is called with the code and text (lines joined by
	// "\n", bounded) of every complete reply, numbered from 0.
	onReply func(k, code int, text string)
	line    []byte
	text    []byte // of the reply in progress
	lineLen int    // lineLimitReader's count: bytes since the last '\n', plus one
	code    int    // of the reply in progress; 0 between replies
	n       int    // replies completed
	dead    bool   // a line go-smtp rejects (and fails on): parsing stops for good

	due    int    // replies the client asked for and has not received
	inData bool   // writes are message data (after 354 up to the dot), not commands
	stray  string // why the session is out of step; "" while it is in step
}

// newReplyTap returns a tap for a new connection, whose greeting is due.
func newReplyTap() *replyTap { return &replyTap{lineLen: 1, due: 1} }

// tapLineLimit is go-smtp's client line limit (lineLimitReader).
const tapLineLimit = 2000

// maxTapText bounds the text a tap keeps of one reply.
const maxTapText = 1024

func (t *replyTap) outOfStep(why string) {
	if t.stray == "" {
		t.stray = why
	}
}

func (t *replyTap) feed(p []byte) {
	if t.dead {
		return
	}
	n := t.lineLen
	for _, c := range p {
		if c == '\n' {
			n = 0
		}
		n++
		if n > tapLineLimit {
			t.dead = true
			return
		}
	}
	t.lineLen = n
	for len(p) > 0 && !t.dead {
		if t.code == 0 && len(t.line) == 0 && t.due <= 0 {
			t.outOfStep("the server sent data when no reply was due")
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.line = append(t.line, p...)
			return
		}
		t.line = append(t.line, p[:i]...)
		p = p[i+1:]
		t.endLine(strings.TrimSuffix(string(t.line), "\r"))
		t.line = t.line[:0]
	}
}

// wrote counts the replies due for what the client wrote: one per command
// line, none for message data.
func (t *replyTap) wrote(p []byte) {
	if !t.inData {
		t.due += bytes.Count(p, []byte{'\n'})
	}
}

// eof ends a last line that has no newline, as bufio.Reader's ReadLine
// (under net/textproto) returns it at the end of the stream.
func (t *replyTap) eof() {
	if len(t.line) > 0 && !t.dead {
		t.endLine(strings.TrimSuffix(string(t.line), "\r"))
		t.line = t.line[:0]
	}
}

// partial reports whether part of a reply has been read.
func (t *replyTap) partial() bool { return t.code != 0 || len(t.line) > 0 }

func (t *replyTap) endLine(l string) {
	code, final, ok := tapCodeLine(l)
	if t.code == 0 {
		// The first line of a reply must parse, or go-smtp fails.
		if !ok {
			t.dead = true
			return
		}
		t.code = code
		t.text = t.text[:0]
	} else if !ok || code != t.code {
		ok = false // a continuation line for textproto
	}
	if len(t.text) < maxTapText {
		if len(t.text) > 0 {
			t.text = append(t.text, '\n')
		}
		t.text = append(t.text, l[:min(len(l), maxTapText-len(t.text))]...)
	}
	if ok && final {
		if t.due <= 0 {
			t.outOfStep(fmt.Sprintf("reply %d when none was due", code))
		}
		t.due--
		if t.onReply != nil {
			t.onReply(t.n, t.code, string(t.text))
		}
		t.n++
		t.code = 0
	}
}

// tapConn is the connection go-smtp reads from and writes to, above TLS:
// its tap sees every byte of the session. pre is returned first, before
// anything from Conn (the greeting go-smtp waits for after STARTTLS).
type tapConn struct {
	net.Conn
	tap *replyTap
	pre []byte
	raw net.Conn // the socket, under TLS and wireConn, for pending
}

func (c *tapConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	c.tap.feed(p[:n])
	if err == io.EOF {
		c.tap.eof()
	}
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.tap.wrote(p)
	return c.Conn.Write(p)
}

// tlsRecordWait bounds the read inStep makes when, under TLS, the socket
// holds bytes at a point where no reply is due: they may be a record that
// carries no data (a TLS 1.3 session ticket or key update), which only
// reading tells apart from a stray reply. The socket holds the record
// already, so the read ends at once unless the record is incomplete.
var tlsRecordWait = 20 * time.Millisecond

// inStep returns an error unless the session is in step at a point where
// no reply is due: every reply due has arrived, none more, no part of
// another, and nothing more is waiting to be read. It never waits for the
// server: what go-smtp has buffered the tap has seen already, and the
// socket is looked at without blocking (pending). A stray reply that the
// server sends after this check is read as the reply to the next command
// and found then as one reply too many, when the server answers that
// command too; one that comes after the last reply of the session is not
// found at all. Bytes it reads are lost to go-smtp; the session is not
// used again after a failure.
func (c *tapConn) inStep() error {
	t := c.tap
	switch {
	case t.stray != "":
	case t.dead:
		t.outOfStep("a reply the client cannot parse")
	case t.due != 0:
		t.outOfStep(fmt.Sprintf("%d replies missing", t.due))
	case t.partial():
		t.outOfStep("the server sent part of a reply that was not due")
	case c.pending():
		t.outOfStep("the server sent data when no reply was due")
	}
	if t.stray != "" {
		return fmt.Errorf("server out of step: %s", t.stray)
	}
	return nil
}

// pending reports, without waiting for the server, whether it has sent
// bytes that go-smtp has not read: on the socket (a non-blocking peek), or
// under TLS in records the TLS layer has read off the socket but not
// returned yet (a read with a deadline in the past returns only those).
func (c *tapConn) pending() bool {
	if len(c.pre) > 0 {
		return true
	}
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return sockpeek.Readable(c.raw)
	}
	read := func(deadline time.Time) bool {
		tc.SetReadDeadline(deadline)
		defer tc.SetReadDeadline(time.Time{})
		var b [512]byte
		n, _ := c.Read(b[:])
		return n > 0
	}
	if read(time.Unix(1, 0)) {
		return true
	}
	return sockpeek.Readable(c.raw) && read(time.Now().Add(tlsRecordWait))
}

// tapCodeLine parses "ddd " or "ddd-" as net/textproto's parseCodeLine
// does: three digits making a code of at least 100.
func tapCodeLine(l string) (code int, final, ok bool) {
	if len(l) < 4 || l[3] != ' ' && l[3] != '-' {
		return 0, false, false
	}
	for _, c := range []byte(l[:3]) {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return 0, false, false
	}
	return code, l[3] == ' ', true
}
