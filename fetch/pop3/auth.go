package pop3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/xdg-go/scram"
)

// Mechanism is how a session logs in: the values of the rc file's auth
// setting. Auto picks one from the server's CAPA SASL list (see choose).
type Mechanism string

const (
	MechAuto        Mechanism = "auto"
	MechUser        Mechanism = "user"          // USER/PASS (RFC 1939 §7)
	MechAPOP        Mechanism = "apop"          // APOP (RFC 1939 §7): MD5, only when asked for
	MechPlain       Mechanism = "plain"         // SASL PLAIN (RFC 4616)
	MechSCRAMSHA256 Mechanism = "scram-sha-256" // SASL SCRAM-SHA-256 (RFC 7677)
	MechSCRAMSHA1   Mechanism = "scram-sha-1"   // SASL SCRAM-SHA-1 (RFC 5802)
	MechXOAUTH2     Mechanism = "xoauth2"       // SASL XOAUTH2 (Google's and Microsoft's bearer token mechanism)
	MechOAUTHBEARER Mechanism = "oauthbearer"   // SASL OAUTHBEARER (RFC 7628)
)

// Mechanisms lists every value of Mechanism, auto first.
var Mechanisms = []Mechanism{MechAuto, MechUser, MechAPOP, MechPlain, MechSCRAMSHA256, MechSCRAMSHA1, MechXOAUTH2, MechOAUTHBEARER}

// saslName is the mechanism's name on the wire (CAPA SASL, AUTH), "" for
// the two that are not SASL.
func (m Mechanism) saslName() string {
	switch m {
	case MechUser, MechAPOP, MechAuto, "":
		return ""
	}
	return strings.ToUpper(string(m))
}

// String is the name a log line or an error uses: the SASL name, or USER
// and APOP.
func (m Mechanism) String() string {
	if n := m.saslName(); n != "" {
		return n
	}
	return strings.ToUpper(string(m))
}

// TokenFunc returns an OAuth2 access token for the account. fresh asks for
// one other than any returned before (the server rejected it): the source
// refreshes instead of returning a cached token. Its errors say what went
// wrong with the token source and never contain a token.
type TokenFunc func(ctx context.Context, fresh bool) (string, error)

// Credentials are what Authenticate logs in with.
type Credentials struct {
	Mechanism Mechanism // "" = MechAuto
	Username  string
	Password  string    // for USER, APOP, PLAIN and SCRAM
	Token     TokenFunc // OAuth2 access tokens, for XOAUTH2 and OAUTHBEARER; nil = none
	// Cleartext lets a mechanism that sends the secret itself (USER/PASS,
	// PLAIN, XOAUTH2, OAUTHBEARER) run over a connection without TLS to a
	// host other than loopback: the account's explicit tls = "none".
	// Without it such a mechanism is refused before a byte is sent.
	Cleartext bool
	// NoSCRAM makes auto pass over SCRAM: an earlier login of this
	// account saw SCRAM refused and PLAIN or USER/PASS accepted (see
	// Conn.FellBack), so the failed attempt is not repeated every poll.
	NoSCRAM bool
}

// ErrMechanism: the mechanism asked for (or every one auto could pick) is
// not offered by the server, or cannot run over this connection (then the
// error wraps ErrTLS too): nothing was sent. Or the server refused the AUTH
// command of a mechanism its CAPA did not list, with no response code (see
// Conn.notImplemented). It does not wrap ErrAuth: the credential was not
// judged.
var ErrMechanism = errors.New("no usable authentication mechanism")

// Bounds on a SASL exchange (RFC 5034 §4 leaves them to the client): a
// server that sends endless or huge challenges fails the login instead of
// holding it. SCRAM needs two challenges, the others one.
const (
	maxChallenge     = 8 << 10 // bytes of one continuation line
	maxChallenges    = 8       // continuations in one exchange
	maxCommandLine   = 255     // RFC 2449 §4, CRLF included: the initial response rule of RFC 5034 §4
	maxSCRAMIters    = 1 << 20 // PBKDF2 rounds a server may ask for: more is a way to burn the client's CPU
	maxTokenLen      = 16 << 10
	apopTimestampMax = 256
)

// peerLoopback reports whether the server is on a loopback address; a
// variable so that tests can take a loopback server for a remote one.
var peerLoopback = func(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Mechanism returns the mechanism of the last successful Authenticate, ""
// before it.
func (c *Conn) Mechanism() Mechanism { return c.mech }

// FellBack returns the SCRAM mechanism that auto chose and the server
// refused before the login succeeded with Mechanism (see Authenticate), ""
// when there was no such fallback.
func (c *Conn) FellBack() Mechanism { return c.fellBack }

// verifiedTLS reports whether the session runs over TLS; Dial only returns
// a TLS connection whose server was verified (by the roots or the pin).
func (c *Conn) verifiedTLS() bool { return c.g.raw != c.g.Conn }

// secure reports whether a secret sent in the clear is protected: TLS, a
// loopback peer, or the account's explicit opt-in.
func (c *Conn) secure(cr Credentials) bool {
	return c.g.raw != c.g.Conn || cr.Cleartext || peerLoopback(c.g.raw.RemoteAddr())
}

// Authenticate logs in with cr (see choose for auto), then re-reads the
// capabilities (see capaAfterLogin). It runs after Dial, so after the TLS
// gate; a mechanism that would send the secret itself over a connection
// that is not secure (see Credentials.Cleartext) is refused before any byte
// of it is sent.
//
// A failed mechanism is followed by another one in one case only: auto
// chose SCRAM, the session runs over verified TLS, and the server refused
// the login as an authentication failure (many servers, Dovecot among
// them, list SCRAM while their password database holds hashes SCRAM cannot
// use). Then PLAIN, if offered, else USER/PASS, if offered (or CAPA was
// not answered), is tried once on the same connection (RFC 5034 §4 lets
// the client try again after -ERR); FellBack reports it. This cannot be
// forced by an attacker to get the password: verified TLS already
// authenticates the server, and the password goes only to it. There is
// never a fallback after a failure on a connection without verified TLS,
// for an explicitly configured mechanism, or to a mechanism the server did
// not offer. The OAuth2 mechanisms retry, once, with a fresh token (see
// oauth).
//
// A refusal wraps ErrAuth, ErrInUse, ErrLoginDelay or ErrLoginRefused (see
// classifyLogin), or ErrMechanism when nothing was tried or the mechanism
// is not implemented (see notImplemented). Neither the
// password, a token, nor any response of a mechanism is ever put in an
// error; errors name the mechanism and quote the server, with every
// credential the session sent masked in its text (see Conn.remember).
func (c *Conn) Authenticate(ctx context.Context, cr Credentials) error {
	if c.botched != nil {
		return c.botched
	}
	m, err := c.choose(cr)
	if err != nil {
		return err
	}
	c.remember(cr.Password)
	switch m {
	case MechUser, MechPlain, MechXOAUTH2, MechOAUTHBEARER:
		if !c.secure(cr) {
			return fmt.Errorf("%w: %w: %s would send the secret in clear text over a connection without TLS to %s; use tls = \"implicit\" or \"starttls\"",
				ErrTLS, ErrMechanism, m, c.g.raw.RemoteAddr())
		}
	}
	switch m {
	case MechUser:
		err = c.Login(cr.Username, cr.Password)
		if err == nil {
			c.mech = m
		}
		return err
	case MechAPOP:
		err = c.apop(cr.Username, cr.Password)
	case MechPlain:
		cl := sasl.NewPlainClient("", cr.Username, cr.Password)
		err = c.notImplemented(m, c.sasl(m, &goSASL{c: cl}, false))
	case MechSCRAMSHA256, MechSCRAMSHA1:
		var sc *scramClient
		if sc, err = newSCRAM(m, c.host, cr.Username, cr.Password); err == nil {
			sc.redact = c.redact
			err = c.sasl(m, sc, false)
		}
		err = c.notImplemented(m, err)
		if next := c.fallback(cr, err); next != "" {
			c.fellBack = m
			if next == MechUser {
				err = c.Login(cr.Username, cr.Password)
				if err == nil {
					c.mech = next
				}
				return err
			}
			m = next
			err = classifyLogin(c.sasl(m, &goSASL{c: sasl.NewPlainClient("", cr.Username, cr.Password)}, false))
		}
	case MechXOAUTH2, MechOAUTHBEARER:
		err = c.oauth(ctx, m, cr)
	}
	if err != nil {
		return err
	}
	c.mech = m
	return c.capaAfterLogin()
}

// errNoProof marks a SCRAM exchange whose server-final message did not
// carry a valid server signature (RFC 5802 §5): the server cannot prove
// that it knows the password.
var errNoProof = errors.New("it cannot prove that it knows the password")

// fallback returns the mechanism to try after SCRAM failed with err, ""
// for none (see Authenticate for the rule).
func (c *Conn) fallback(cr Credentials, err error) Mechanism {
	if err == nil || !errors.Is(err, ErrAuth) || errors.Is(err, errNoProof) || c.botched != nil || !c.verifiedTLS() {
		// errNoProof: the server failed mutual authentication, so it
		// may be an impostor; it gets no password in any form.
		return ""
	}
	if cr.Mechanism != "" && cr.Mechanism != MechAuto {
		return ""
	}
	switch {
	case c.offered(MechPlain):
		return MechPlain
	case c.caps.user || !c.caps.known:
		return MechUser
	}
	return ""
}

// offered reports whether the server lists m in CAPA SASL.
func (c *Conn) offered(m Mechanism) bool {
	return slices.ContainsFunc(c.caps.sasl, func(s string) bool { return strings.EqualFold(s, m.saslName()) })
}

// choose picks the mechanism. An explicit one must be offered in CAPA SASL
// when the server announced a list at all (USER and APOP are not SASL and
// are tried as asked). Auto, with a token source: OAUTHBEARER if offered,
// else XOAUTH2. Auto with a password: the strongest of SCRAM-SHA-256,
// SCRAM-SHA-1 and PLAIN that the server offers, else USER/PASS (a server
// without CAPA SASL gets USER/PASS, as it always did). APOP is never picked
// by auto: its MD5 challenge is broken.
func (c *Conn) choose(cr Credentials) (Mechanism, error) {
	offered := c.offered
	m := cr.Mechanism
	if m == "" {
		m = MechAuto
	}
	if m != MechAuto {
		if !slices.Contains(Mechanisms, m) {
			return "", fmt.Errorf("%w: unknown mechanism %q", ErrMechanism, string(m))
		}
		if m.saslName() != "" && len(c.caps.sasl) > 0 && !offered(m) {
			return "", fmt.Errorf("%w: auth = %q but the server offers SASL %s only", ErrMechanism, string(m), sanitize(strings.Join(c.caps.sasl, " "), 120))
		}
		if (m == MechXOAUTH2 || m == MechOAUTHBEARER) && cr.Token == nil {
			return "", fmt.Errorf("%w: auth = %q needs an OAuth2 token source", ErrMechanism, string(m))
		}
		return m, nil
	}
	if cr.Token != nil {
		switch {
		case offered(MechOAUTHBEARER):
			return MechOAUTHBEARER, nil
		case offered(MechXOAUTH2) || len(c.caps.sasl) == 0:
			// A server that lists no SASL may still take XOAUTH2
			// (it is the one Microsoft documents); there is nothing
			// weaker to fall back to anyway.
			return MechXOAUTH2, nil
		}
		return "", fmt.Errorf("%w: OAuth2 is configured but the server offers SASL %s, neither OAUTHBEARER nor XOAUTH2", ErrMechanism, sanitize(strings.Join(c.caps.sasl, " "), 120))
	}
	for _, m := range []Mechanism{MechSCRAMSHA256, MechSCRAMSHA1, MechPlain} {
		// NoSCRAM was learnt over verified TLS and holds only there.
		if cr.NoSCRAM && c.verifiedTLS() && m != MechPlain {
			continue
		}
		if offered(m) {
			return m, nil
		}
	}
	return MechUser, nil
}

// saslClient is the client side of one SASL mechanism, driven by sasl.
type saslClient interface {
	// start returns the initial response (empty is a response too).
	start() ([]byte, error)
	// next answers a decoded challenge. An error with a nil response
	// cancels the exchange ("*"); an error with a response (the dummy
	// answer to an OAuth2 error challenge, RFC 7628 §3.2.3) sends the
	// response, reads the server's -ERR and returns the error.
	next(challenge []byte) ([]byte, error)
	// verified reports whether the mechanism accepts the server's +OK:
	// SCRAM only once the server has proved that it knows the password.
	verified() bool
}

// sasl runs one AUTH exchange (RFC 5034 §4). The initial response goes on
// the command line when the whole line fits in 255 octets and twoStep is
// not set; otherwise the client sends "AUTH MECH" and the response after the
// server's first (empty) challenge. At most maxChallenges challenges of at
// most maxChallenge bytes are taken; a challenge the mechanism cannot
// answer is cancelled with "*".
func (c *Conn) sasl(m Mechanism, mc saslClient, twoStep bool) error {
	name := m.saslName()
	ir, err := mc.start()
	if err != nil {
		return fmt.Errorf("%s: %w", m, err)
	}
	line := "AUTH " + name
	pending := true // ir not sent yet
	if !twoStep {
		enc := "="
		if len(ir) > 0 {
			enc = base64.StdEncoding.EncodeToString(ir)
		}
		if len(line)+1+len(enc)+2 <= maxCommandLine {
			line += " " + enc
			pending = false
			c.remember(enc)
		}
	}
	r, err := c.Exchange("AUTH", line, maxChallenge)
	if err != nil {
		// The answer to the AUTH command itself (see notImplemented).
		return &authRefused{fmt.Errorf("%s: %w", m, err)}
	}
	for n := 0; err == nil && r.Continuation; n++ {
		if n == maxChallenges {
			return c.cancel(m, fmt.Errorf("%w: %s: more than %d challenges", ErrProtocol, m, maxChallenges))
		}
		var resp []byte
		var mechErr error
		if pending {
			// The empty challenge that asks for the initial response;
			// its text, if any, is not used.
			resp, pending = ir, false
		} else {
			ch, derr := decodeChallenge(r.Text)
			if derr != nil {
				// The error quotes the challenge: server text.
				return c.cancel(m, fmt.Errorf("%w: %s: %s", ErrProtocol, m, c.redact(derr.Error())))
			}
			resp, mechErr = mc.next(ch)
			if mechErr != nil && resp == nil {
				return c.cancel(m, fmt.Errorf("%s: %w", m, mechErr))
			}
		}
		enc := base64.StdEncoding.EncodeToString(resp)
		c.remember(enc)
		r, err = c.Exchange("AUTH", enc, maxChallenge)
		if mechErr != nil {
			if err == nil {
				// A server that goes on after its own error
				// challenge, or claims success, is not logged in
				// as far as popfetch knows: end the session.
				c.botched = fmt.Errorf("%w: %s: the server went on after its error challenge", ErrProtocol, m)
				c.g.Close()
				return errors.Join(mechErr, c.botched)
			}
			if IsERR(err) {
				return fmt.Errorf("%w; %v", mechErr, err)
			}
			return errors.Join(mechErr, err)
		}
	}
	if err != nil {
		// A -ERR stays a *RespError for classifyLogin and tokenRejected.
		return fmt.Errorf("%s: %w", m, err)
	}
	if !mc.verified() {
		// +OK from a server that did not prove itself (SCRAM's server
		// signature, RFC 5802 §5): it may be an impostor that accepts
		// anyone. Nothing more is sent to it, not even QUIT.
		c.botched = fmt.Errorf("%w: %s: the server said +OK without proving that it knows the password (mutual authentication failed)", ErrAuth, m)
		c.g.Close()
		return c.botched
	}
	return nil
}

// authRefused is the server's -ERR in answer to the AUTH command itself,
// before any challenge.
type authRefused struct{ err error }

func (e *authRefused) Error() string { return e.err.Error() }
func (e *authRefused) Unwrap() error { return e.err }

// notImplemented turns the -ERR a server without SASL (mailutils pop3d,
// popa3d, solid-pop3d: "-ERR Not implemented") gives the AUTH command of a
// mechanism its CAPA did not list into ErrMechanism: the credentials were
// not judged, so the account is not held as for a wrong password. A reply
// with a response code (RFC 2449, RFC 3206) says more and is classified as
// usual (see classifyLogin), as is any error of a listed mechanism.
func (c *Conn) notImplemented(m Mechanism, err error) error {
	var ar *authRefused
	var re *RespError
	if c.offered(m) || !errors.As(err, &ar) || !errors.As(err, &re) || re.Code != "" {
		return classifyLogin(err)
	}
	what := "does not list SASL in CAPA"
	if len(c.caps.sasl) > 0 {
		what = "does not list " + m.String() + " in CAPA SASL"
	}
	return fmt.Errorf("%w: auth = %q but the server %s and refused AUTH %s: %v", ErrMechanism, string(m), what, m, err)
}

// cancel ends an exchange the client cannot continue: "*" (RFC 5034 §4),
// to which the server must answer -ERR. Any other answer ends the session.
func (c *Conn) cancel(m Mechanism, why error) error {
	if c.botched != nil {
		return errors.Join(why, c.botched)
	}
	r, err := c.Exchange("AUTH", "*", maxChallenge)
	if err == nil {
		c.botched = fmt.Errorf("%w: %s: the server did not accept the cancelled exchange (continuation %v)", ErrProtocol, m, r.Continuation)
		c.g.Close()
		return errors.Join(why, c.botched)
	}
	if IsERR(err) {
		return why
	}
	return errors.Join(why, err)
}

// decodeChallenge decodes the base64 of a continuation (RFC 5034 §4):
// standard alphabet, padded, no spaces; empty text is an empty challenge.
func decodeChallenge(text []byte) ([]byte, error) {
	if len(text) > maxChallenge {
		return nil, fmt.Errorf("challenge of %d bytes (limit %d)", len(text), maxChallenge)
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Strict().Decode(out, text)
	if err != nil || bytes.ContainsAny(text, "\r\n") {
		return nil, fmt.Errorf("challenge %s is not base64", quote(text))
	}
	return out[:n], nil
}

// goSASL adapts a github.com/emersion/go-sasl client (PLAIN).
type goSASL struct{ c sasl.Client }

func (g *goSASL) start() ([]byte, error) {
	_, ir, err := g.c.Start()
	if ir == nil {
		ir = []byte{}
	}
	return ir, err
}

func (g *goSASL) next(ch []byte) ([]byte, error) {
	// PLAIN is one message; any challenge after it is unexpected.
	return nil, fmt.Errorf("%w: unexpected challenge", ErrProtocol)
}

func (g *goSASL) verified() bool { return true }

// scramClient runs SCRAM (RFC 5802, RFC 7677) with the GS2 header "n,,": no
// channel binding, no authorization identity.
type scramClient struct {
	conv   *scram.ClientConversation
	step   int                 // challenges taken
	redact func(string) string // the Conn's (see Conn.redact); nil: none
	key    scramKey            // cl's entry in scramClients
	cl     *scram.Client
}

func newSCRAM(m Mechanism, host, user, pass string) (*scramClient, error) {
	h := scram.SHA256
	if m == MechSCRAMSHA1 {
		h = scram.SHA1
	}
	k := scramKey{host: strings.ToLower(host), mech: m, user: user, pass: pass}
	cl, err := scramClients.client(k, func() (*scram.Client, error) { return h.NewClient(user, pass, "") })
	if err != nil {
		// The library's SASLprep error names the user, never the password.
		return nil, fmt.Errorf("%w: %s: %v", ErrMechanism, m, err)
	}
	return &scramClient{conv: cl.NewConversation(), key: k, cl: cl}, nil
}

func (s *scramClient) start() ([]byte, error) {
	first, err := s.conv.Step("")
	return []byte(first), err
}

func (s *scramClient) next(ch []byte) ([]byte, error) {
	s.step++
	switch s.step {
	case 1: // server-first-message: nonce, salt, iterations
		if n, ok := scramIterations(ch); ok && n > maxSCRAMIters {
			return nil, fmt.Errorf("%w: the server asks for %d iterations (limit %d)", ErrProtocol, n, maxSCRAMIters)
		}
		resp, err := s.conv.Step(string(ch))
		if err != nil {
			// The library's errors quote no secret.
			return nil, fmt.Errorf("%w: server-first-message: %v", ErrProtocol, err)
		}
		scramClients.saw(s.key, s.cl, scramFactors(ch))
		return []byte(resp), nil
	case 2: // server-final-message: the server's signature, or e=
		if e, ok := strings.CutPrefix(string(ch), "e="); ok {
			if s.redact != nil {
				e = s.redact(e)
			}
			return nil, fmt.Errorf("%w: the server refused the credentials (%s)", ErrAuth, sanitize(e, 80))
		}
		if _, err := s.conv.Step(string(ch)); err != nil {
			return nil, fmt.Errorf("%w: the server failed SCRAM (%v): %w", ErrAuth, err, errNoProof)
		}
		return []byte{}, nil
	}
	return nil, fmt.Errorf("%w: a challenge after the server's final message", ErrProtocol)
}

func (s *scramClient) verified() bool { return s.conv.Valid() }

// scramIterations returns the i= attribute of a server-first-message.
func scramIterations(ch []byte) (int, bool) {
	for _, f := range strings.Split(string(ch), ",") {
		if v, ok := strings.CutPrefix(f, "i="); ok {
			n, err := strconv.Atoi(v)
			return n, err == nil
		}
	}
	return 0, false
}

// apop logs in with APOP (RFC 1939 §7): the MD5 of the greeting's timestamp
// and the password. The timestamp must be a msg-id, "<...@...>"; without
// one nothing is sent.
func (c *Conn) apop(user, pass string) error {
	ts, ok := apopTimestamp(c.greeting)
	if !ok {
		return fmt.Errorf("%w: auth = \"apop\" but the server greeting has no APOP timestamp <...@...>", ErrMechanism)
	}
	sum := md5.Sum([]byte(ts + pass))
	digest := hex.EncodeToString(sum[:])
	c.remember(pass, digest)
	line := "APOP " + user + " " + digest
	if len(line)+2 > maxCommandLine {
		return fmt.Errorf("%w: APOP: the user name is too long for a command line", ErrMechanism)
	}
	if err := c.write("APOP", line); err != nil {
		return err
	}
	c.due++
	if _, err := c.status("APOP", lineBudget, c.deadline()); err != nil {
		return classifyLogin(err)
	}
	return nil
}

// apopTimestamp finds the timestamp in a greeting (RFC 1939 §7: a msg-id
// as in RFC 822, "<" local "@" domain ">", the last such element of the
// line): printable ASCII without spaces or angle brackets inside, one
// "@" with text on both sides, at most apopTimestampMax bytes.
func apopTimestamp(greeting []byte) (string, bool) {
	end := bytes.LastIndexByte(greeting, '>')
	if end < 0 {
		return "", false
	}
	start := bytes.LastIndexByte(greeting[:end], '<')
	if start < 0 || end-start+1 > apopTimestampMax {
		return "", false
	}
	ts := greeting[start : end+1]
	inner := ts[1 : len(ts)-1]
	at := bytes.IndexByte(inner, '@')
	if at <= 0 || at == len(inner)-1 || bytes.Count(inner, []byte("@")) != 1 {
		return "", false
	}
	for _, b := range inner {
		if b <= 0x20 || b >= 0x7f || b == '<' || b == '>' {
			return "", false
		}
	}
	return string(ts), true
}

// OAuthError is the error a server reports in the JSON challenge of a
// failed XOAUTH2 or OAUTHBEARER (RFC 7628 §3.2.2): status such as
// "invalid_token" or "insufficient_scope" (Google sends an HTTP status
// code), schemes and scope. The values are sanitized server data.
type OAuthError struct {
	Mechanism Mechanism
	Status    string `json:"status"`
	Schemes   string `json:"schemes"`
	Scope     string `json:"scope"`
}

func (e *OAuthError) Error() string {
	s := fmt.Sprintf("%s: the server rejected the token: status %q", e.Mechanism, e.Status)
	if e.Scope != "" {
		s += fmt.Sprintf(", scope %q", e.Scope)
	}
	if e.Schemes != "" {
		s += fmt.Sprintf(", schemes %q", e.Schemes)
	}
	return s
}

// oauthClient runs XOAUTH2 or OAUTHBEARER with one access token.
type oauthClient struct {
	m      Mechanism
	ir     []byte
	fail   bool
	redact func(string) string // the Conn's (see Conn.redact); nil: none
}

func (o *oauthClient) start() ([]byte, error) { return o.ir, nil }

// next takes the one challenge a bearer mechanism gets: the JSON error. It
// is answered with the response that lets the server finish with -ERR: an
// empty one for XOAUTH2 (as Google documents it), %x01 for OAUTHBEARER
// (RFC 7628 §3.2.3).
func (o *oauthClient) next(ch []byte) ([]byte, error) {
	if o.fail {
		return nil, fmt.Errorf("%w: a second challenge", ErrProtocol)
	}
	o.fail = true
	e := &OAuthError{Mechanism: o.m}
	var raw struct{ Status, Schemes, Scope json.RawMessage }
	if err := json.Unmarshal(ch, &raw); err != nil {
		e.Status = "(no JSON error)"
	} else {
		red := o.redact
		if red == nil {
			red = func(s string) string { return s }
		}
		e.Status, e.Schemes, e.Scope = jsonText(raw.Status, red), jsonText(raw.Schemes, red), jsonText(raw.Scope, red)
	}
	if o.m == MechOAUTHBEARER {
		return []byte{0x01}, e
	}
	return []byte{}, e
}

func (o *oauthClient) verified() bool { return true }

// jsonText renders a JSON value for an error: a string's text, or the
// value as written (Google's status is a string, some servers send a number).
func jsonText(v json.RawMessage, redact func(string) string) string {
	var s string
	if json.Unmarshal(v, &s) != nil {
		s = string(v)
	}
	return sanitize(redact(s), 200)
}

// oauth logs in with an OAuth2 bearer token: from cr.Token, and if the
// server rejects it, once more with a fresh one. Rejected twice is ErrAuth:
// a human must look (a revoked grant, a missing permission). XOAUTH2 always
// uses the two-line form ("AUTH XOAUTH2", then the response after "+"),
// which Microsoft requires and Google accepts.
func (c *Conn) oauth(ctx context.Context, m Mechanism, cr Credentials) error {
	try := func(fresh bool) error {
		tok, err := cr.Token(ctx, fresh)
		if err != nil {
			return fmt.Errorf("%s: access token: %w", m, err)
		}
		if !validToken(tok) {
			return fmt.Errorf("%w: %s: the token source returned no valid bearer token (RFC 6750 b64token)", ErrMechanism, m)
		}
		c.remember(tok)
		o := &oauthClient{m: m, redact: c.redact}
		if m == MechXOAUTH2 {
			o.ir = []byte("user=" + cr.Username + "\x01auth=Bearer " + tok + "\x01\x01")
		} else {
			_, o.ir, _ = sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: cr.Username, Token: tok, Host: c.host, Port: c.port}).Start()
		}
		return c.sasl(m, o, m == MechXOAUTH2)
	}
	err := try(false)
	if !tokenRejected(err) || c.botched != nil {
		return classifyLogin(err)
	}
	first := err
	err = try(true)
	if tokenRejected(err) && c.botched == nil {
		return fmt.Errorf("%w: the server rejected a fresh token too: %v (the first: %v)", ErrAuth, err, first)
	}
	if tokenRejected(err) {
		return fmt.Errorf("%w: %v", ErrAuth, err)
	}
	return classifyLogin(err)
}

// tokenRejected reports whether err is the server refusing the token itself
// (an error challenge, or -ERR without a code or with [AUTH]), rather than
// [IN-USE], [LOGIN-DELAY], [SYS/TEMP], a broken session or a token source
// that failed.
func tokenRejected(err error) bool {
	var oe *OAuthError
	if errors.As(err, &oe) {
		return true
	}
	var re *RespError
	return errors.As(err, &re) && (re.Code == "" || re.Code == "AUTH")
}

// validToken reports whether tok is an RFC 6750 §2.1 b64token: it goes on a
// line of its own between \x01 separators, so a CR, LF or \x01 in it would
// change what the server reads.
func validToken(tok string) bool {
	if tok == "" || len(tok) > maxTokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		b := tok[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-._~+/=", b) >= 0) {
			return false
		}
	}
	return true
}
