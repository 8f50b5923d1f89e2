package filter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	milter "github.com/d--j/go-milter"
	"github.com/d--j/go-milter/milterutil"
	"golang.org/x/text/transform"

	"github.com/popfetch/popfetch/deliver"
)

// MilterOptions configures a Milter. The zero value is usable.
type MilterOptions struct {
	// Timeout bounds each read and write of the conversation (the whole
	// conversation is bounded by the context Check gets). Default 2
	// minutes.
	Timeout time.Duration
	// LocalHost is the "j" macro (the MTA's name); default os.Hostname.
	LocalHost string
	// MaxReply bounds what popfetch reads from the milter for one
	// message (a replacement body is the only large part): default 32
	// MiB. A milter sending more is treated as broken (unavailable).
	MaxReply int64
}

// Milter is a milter filter (the Sendmail milter protocol, versions 2-6),
// asked once per message on a connection of its own, the way Postfix
// and sendmail ask it for one SMTP transaction.
type Milter struct {
	name             string
	network, address string
	opts             MilterOptions
}

// NewMilter returns a milter filter for addr, written as in Postfix's
// smtpd_milters: "inet:HOST:PORT", "inet6:[HOST]:PORT" or
// "unix:/path/to/socket".
func NewMilter(name, addr string, opts MilterOptions) (*Milter, error) {
	network, address, err := parseMilterAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("milter %s: %w", name, err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.LocalHost == "" {
		opts.LocalHost, _ = os.Hostname()
	}
	if opts.MaxReply <= 0 {
		opts.MaxReply = 32 << 20
	}
	return &Milter{name: name, network: network, address: address, opts: opts}, nil
}

func parseMilterAddr(addr string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(addr, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("address %q is not inet:HOST:PORT or unix:PATH", addr)
	}
	switch kind {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("socket %q is not an absolute path", rest)
		}
		return "unix", rest, nil
	case "inet", "inet6":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("address %q: %w", addr, err)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	}
	return "", "", fmt.Errorf("address %q: unknown kind %q (inet, inet6, unix)", addr, kind)
}

// Name returns the filter's name.
func (f *Milter) Name() string { return f.name }

// The macros popfetch sends, by stage, under the names Postfix and
// sendmail use. A milter that asks for other macros at negotiation gets
// the ones of these it asks for.
var milterMacros = map[milter.MacroStage][]milter.MacroName{
	milter.StageConnect: {milter.MacroMTAFQDN, milter.MacroDaemonName, milter.MacroMTAVersion,
		milter.MacroClientAddr, milter.MacroClientName, milter.MacroClientPTR, milter.MacroIfAddr,
		milter.MacroRFC1413AuthInfo},
	milter.StageHelo: {},
	milter.StageMail: {milter.MacroQueueId, milter.MacroMailAddr, milter.MacroMailHost, milter.MacroMailMailer},
	milter.StageRcpt: {milter.MacroRcptAddr, milter.MacroRcptHost, milter.MacroRcptMailer},
	milter.StageData: {milter.MacroQueueId},
	milter.StageEOH:  {},
	milter.StageEOM:  {milter.MacroQueueId},
}

// maxMilterHeader bounds one header field sent to a milter: libmilter
// refuses packets over 64 KiB, and Postfix cuts fields too
// (header_size_limit). Longer values are sent cut; the message itself is
// not changed.
const maxMilterHeader = 60 << 10

// Check runs one milter conversation for m: connect (the client from
// env.Client), HELO, MAIL FROM, RCPT TO per recipient, the header
// fields, the body in chunks, end of message; and returns the verdict with
// the changes the milter asked for. An error means the milter could not
// be asked to the end.
func (f *Milter) Check(ctx context.Context, env *Envelope, m *deliver.Message) (v Verdict, err error) {
	v.Filter = f.name
	if len(env.Rcpts) == 0 {
		return v, errors.New("no recipients to tell the milter")
	}
	d := &milterDialer{ctx: ctx, maxTotal: f.opts.MaxReply}
	opts := []milter.Option{
		milter.WithDialer(d),
		milter.WithReadTimeout(f.opts.Timeout),
		milter.WithWriteTimeout(f.opts.Timeout),
		// Offer every action, as Postfix and sendmail do: a libmilter
		// milter refuses an MTA that does not offer what it may
		// need. Recipient and sender changes are not made (Ignored).
		milter.WithActions(milter.AllClientSupportedActionMasks),
		milter.WithoutDefaultMacros(),
	}
	for st, names := range milterMacros {
		opts = append(opts, milter.WithMacroRequest(st, names))
	}
	macros := milter.NewMacroBag()
	f.setConnMacros(macros, env)
	client := milter.NewClient(f.network, f.address, opts...)
	s, err := client.Session(macros)
	if err != nil {
		return v, f.wrap(ctx, "connect", err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, d.close)
	defer stop()

	c := env.Client
	host, family, addr := "unknown", milter.FamilyUnknown, ""
	if c.ClientIP.IsValid() {
		addr, family = c.ClientIP.String(), milter.FamilyInet
		if c.ClientIP.Is6() {
			family = milter.FamilyInet6
		}
	}
	if c.ClientName != "" {
		host = c.ClientName
	}
	// done reports whether act ends the conversation, filling v.
	done := func(act *milter.Action, err error) (bool, error) {
		if err != nil {
			return true, f.wrap(ctx, "", err)
		}
		return f.decide(&v, act), nil
	}
	if stop, err := done(s.Conn(host, family, 0, addr)); stop {
		return v, err
	}
	helo := c.Helo
	if helo == "" {
		helo = "unknown"
	}
	if stop, err := done(s.Helo(helo)); stop {
		return v, err
	}
	sender := envAddr(env.Sender)
	macros.Set(milter.MacroMailAddr, sender)
	macros.Set(milter.MacroMailHost, domainOf(sender))
	macros.Set(milter.MacroMailMailer, "esmtp")
	if stop, err := done(s.Mail(sender, "")); stop {
		return v, err
	}
	sent := 0
	for _, r := range env.Rcpts {
		r = envAddr(r)
		if r == "" {
			continue
		}
		macros.Set(milter.MacroRcptAddr, r)
		macros.Set(milter.MacroRcptHost, domainOf(r))
		macros.Set(milter.MacroRcptMailer, "local")
		sent++
		if stop, err := done(s.Rcpt(r, "")); stop {
			return v, err
		}
	}
	if sent == 0 {
		return v, errors.New("no recipient address fit for a milter")
	}
	if stop, err := done(s.DataStart()); stop {
		return v, err
	}
	r := m.Reader()
	head, err := readHead(r, m.Size())
	if err != nil {
		return v, fmt.Errorf("reading the message: %w", err)
	}
	fields, end := splitHeader(head)
	leadSpace := s.ProtocolOption(milter.OptHeaderLeadingSpace)
	for _, fl := range fields {
		if stop, err := done(s.HeaderField(fl.Name, milterValue(fl.value(), leadSpace), nil)); stop {
			return v, err
		}
	}
	if stop, err := done(s.HeaderEnd()); stop {
		return v, err
	}
	start := int64(end)
	if bytes.HasPrefix(head[end:], []byte("\r\n")) {
		start += 2
	} else if bytes.HasPrefix(head[end:], []byte("\n")) {
		start++
	}
	body := transform.NewReader(io.NewSectionReader(r, start, m.Size()-start), &milterutil.CrLfCanonicalizationTransformer{})
	mods, act, err := s.BodyReadFrom(body)
	if err != nil {
		return v, f.wrap(ctx, "body", err)
	}
	// At the end of the message accept (or continue) comes with the
	// changes; any other answer discards them.
	if act.Type != milter.ActionAccept && act.Type != milter.ActionContinue {
		f.decide(&v, act)
		return v, nil
	}
	if err := f.modifications(&v, mods, leadSpace, env.SpoolDir); err != nil {
		v.Close()
		return Verdict{Filter: f.name}, err
	}
	return v, nil
}

func (f *Milter) setConnMacros(macros *milter.MacroBag, env *Envelope) {
	macros.Set(milter.MacroMTAFQDN, f.opts.LocalHost)
	macros.Set(milter.MacroDaemonName, "popfetch")
	macros.Set(milter.MacroMTAVersion, "popfetch "+deliver.Version)
	macros.Set(milter.MacroIfAddr, "127.0.0.1")
	name := "unknown"
	if env.Client.ClientName != "" {
		name = env.Client.ClientName
	}
	macros.Set(milter.MacroClientName, name)
	macros.Set(milter.MacroClientPTR, name)
	if env.Client.ClientIP.IsValid() {
		macros.Set(milter.MacroClientAddr, env.Client.ClientIP.String())
		// "_" is the client as Postfix writes it in its own Received
		// field, "name [address]" (Postfix's smtpd_milter.c): milters
		// that build a Received field for their scanner from it
		// (spamass-milter) otherwise give SpamAssassin no client.
		macros.Set(milter.MacroRFC1413AuthInfo, name+" ["+env.Client.ClientIP.String()+"]")
	}
	if id := env.QueueID; id != "" {
		if h, ok := cleanHost(id); ok {
			macros.Set(milter.MacroQueueId, h)
		}
	}
}

// decide fills v from a milter's answer to one step and reports whether
// the conversation ends there.
func (f *Milter) decide(v *Verdict, act *milter.Action) bool {
	switch act.Type {
	case milter.ActionContinue, milter.ActionSkip:
		return false
	case milter.ActionAccept:
		v.Action = Accept
	case milter.ActionDiscard:
		v.Action = Discard
	case milter.ActionTempFail:
		v.Action, v.Reply = TempFail, deliver.SafeValue(act.SMTPReply, 300)
	case milter.ActionReject:
		v.Action, v.Reply = Reject, deliver.SafeValue(act.SMTPReply, 300)
	case milter.ActionRejectWithCode:
		v.Action, v.Reply = Reject, deliver.SafeValue(act.SMTPReply, 300)
		if act.SMTPCode < 500 {
			v.Action = TempFail
		}
	default:
		v.Action, v.Reply = TempFail, fmt.Sprintf("unknown milter action %d", act.Type)
	}
	return true
}

// modifications turns the end-of-message changes into v's.
func (f *Milter) modifications(v *Verdict, mods []milter.ModifyAction, leadSpace bool, spoolDir string) error {
	for _, ma := range mods {
		val := ma.HeaderValue
		if leadSpace {
			val = strings.TrimPrefix(val, " ")
		}
		switch ma.Type {
		case milter.ActionAddHeader:
			v.Changes = append(v.Changes, Change{Kind: AddHeader, Name: ma.HeaderName, Value: val})
		case milter.ActionInsertHeader:
			v.Changes = append(v.Changes, Change{Kind: InsertHeader, Index: int(ma.HeaderIndex), Name: ma.HeaderName, Value: val})
		case milter.ActionChangeHeader:
			k := ChangeHeader
			if ma.HeaderValue == "" {
				k = RemoveHeader
			}
			v.Changes = append(v.Changes, Change{Kind: k, Index: int(ma.HeaderIndex), Name: ma.HeaderName, Value: val})
		case milter.ActionReplaceBody:
			if v.Body == nil {
				v.Body = deliver.NewSpool(spoolDir, 0)
			}
			if _, err := v.Body.Write(ma.Body); err != nil {
				return fmt.Errorf("milter %s: keeping the replacement body: %w", f.name, err)
			}
		case milter.ActionQuarantine:
			v.Action = Reject
			v.Quarantine = deliver.SafeValue(ma.Reason, 300)
			v.Reply = deliver.SafeValue("quarantine: "+ma.Reason, 300)
		default:
			v.Ignored++
		}
	}
	if v.Body != nil {
		if err := v.Body.Flush(); err != nil {
			return fmt.Errorf("milter %s: keeping the replacement body: %w", f.name, err)
		}
	}
	return nil
}

// wrap names the milter and the step of a failure; a failure caused by
// the context's end says so.
func (f *Milter) wrap(ctx context.Context, step string, err error) error {
	if step == "" {
		step = "conversation"
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("milter %s (%s:%s): %s: %w (%v)", f.name, f.network, f.address, step, cerr, err)
	}
	return fmt.Errorf("milter %s (%s:%s): %s: %w", f.name, f.network, f.address, step, err)
}

// envAddr makes an envelope address fit for MAIL FROM / RCPT TO: angle
// brackets stripped; one with white space, control characters, '<' or
// '>' inside is refused (""), so it cannot change the command.
func envAddr(a string) string {
	a = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "<"), ">")
	if len(a) > 512 {
		return ""
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return ""
		}
	}
	return a
}

func domainOf(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return a[i+1:]
	}
	return ""
}

// milterValue is a header value as a milter gets it: Postfix and
// sendmail send folds as bare LF, and the white space after the colon
// only when the milter asked for it (SMFIP_HDR_LEADSPC).
func milterValue(v []byte, leadSpace bool) string {
	if !leadSpace {
		v = bytes.TrimLeft(v, " \t")
	}
	if len(v) > maxMilterHeader {
		v = v[:maxMilterHeader]
	}
	return strings.ReplaceAll(string(v), "\r\n", "\n")
}

// milterDialer dials the milter under the conversation's context and
// wraps the connection in a limitConn.
type milterDialer struct {
	ctx      context.Context
	maxTotal int64
	mu       sync.Mutex
	conn     net.Conn
}

func (d *milterDialer) Dial(network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(d.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	lc := &limitConn{Conn: c, maxPacket: maxMilterPacket, maxTotal: d.maxTotal}
	d.mu.Lock()
	d.conn = lc
	d.mu.Unlock()
	return lc, nil
}

// close ends the conversation when its context ends: go-milter's own
// timeouts are per packet, so a milter that trickles would otherwise
// hold the message past its deadline.
func (d *milterDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

// maxMilterPacket is the largest packet popfetch reads from a milter:
// go-milter accepts up to 512 MiB per packet and allocates the packet
// before reading it, so a broken milter could make popfetch allocate
// that much. Real milters send at most 1 MiB (SMFIC_BODY and
// SMFIR_REPLBODY chunks of the largest negotiable size).
const maxMilterPacket = 1<<20 + 1024

var errMilterTooMuch = errors.New("milter sent more than popfetch reads")

// limitConn follows the milter framing (a 4-byte big-endian length, then
// that many bytes) of what is read, refusing a packet longer than
// maxPacket before go-milter allocates it, and more than maxTotal bytes
// in all.
type limitConn struct {
	net.Conn
	maxPacket uint32
	maxTotal  int64
	total     int64
	hdr       [4]byte
	nh        int
	left      uint32
}

func (c *limitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.total += int64(n)
	if c.total > c.maxTotal {
		return 0, fmt.Errorf("%w: over %d bytes for one message", errMilterTooMuch, c.maxTotal)
	}
	for i := 0; i < n; {
		if c.left > 0 {
			k := min(uint32(n-i), c.left)
			c.left -= k
			i += int(k)
			continue
		}
		c.hdr[c.nh] = p[i]
		c.nh++
		i++
		if c.nh == 4 {
			c.nh = 0
			c.left = binary.BigEndian.Uint32(c.hdr[:])
			if c.left > c.maxPacket {
				return 0, fmt.Errorf("%w: a packet of %d bytes", errMilterTooMuch, c.left)
			}
		}
	}
	return n, err
}
