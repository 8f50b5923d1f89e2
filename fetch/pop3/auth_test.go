package pop3

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

const allSASL = "SASL PLAIN SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2 OAUTHBEARER"

// tokenStub is a TokenFunc that hands out stale, then fresh, and records
// each call's fresh flag.
type tokenStub struct {
	stale, fresh string
	calls        []bool
	err          error
}

func (s *tokenStub) fn(ctx context.Context, fresh bool) (string, error) {
	s.calls = append(s.calls, fresh)
	if s.err != nil {
		return "", s.err
	}
	if fresh {
		return s.fresh, nil
	}
	return s.stale, nil
}

func tokenIs(good ...string) func(string) bool {
	return func(tok string) bool { return slices.Contains(good, tok) }
}

// authServer starts pop3test with one message and the given SASL line.
func authServer(t *testing.T, opts pop3test.Options, sasl string) *pop3test.Server {
	t.Helper()
	opts.Capa = []string{"USER", "UIDL", "TOP", "RESP-CODES", "AUTH-RESP-CODE"}
	if sasl != "" {
		opts.Capa = append(opts.Capa, sasl)
	}
	opts.Messages = msgs(1)
	return pop3test.NewServer(t, opts)
}

func dialAuth(t *testing.T, srv *pop3test.Server) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), plainOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// afterGreeting is what the client sent after Dial's CAPA.
func afterGreeting(srv *pop3test.Server) []string {
	cmds := srv.Commands()
	if len(cmds) > 0 && cmds[0] == "CAPA" {
		cmds = cmds[1:]
	}
	return cmds
}

// TestAuthenticate: every mechanism logs in against pop3test, auto picks the
// strongest one the server offers, and the lines on the wire have the form
// RFC 5034 asks for (initial response only within 255 octets, XOAUTH2 in
// two lines).
func TestAuthenticate(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	long := strings.Repeat("t", 300)
	for _, tt := range []struct {
		name   string
		sasl   string
		opts   pop3test.Options
		cr     Credentials
		want   string                     // the server's login mechanism
		wire   []string                   // the client's lines after CAPA, up to the CAPA after login; nil = not checked
		prefix []string                   // the first client lines; nil = not checked
		wireAt func(port string) []string // wire, for the server's port
	}{
		{name: "auto without SASL is USER/PASS, byte for byte", cr: Credentials{Username: "user", Password: "pass"},
			want: "USER", wire: []string{"USER user", "PASS pass"}},
		{name: "auto picks SCRAM-SHA-256", sasl: allSASL, cr: Credentials{Username: "user", Password: "pass"}, want: "SCRAM-SHA-256"},
		{name: "auto picks SCRAM-SHA-1 over PLAIN", sasl: "SASL PLAIN SCRAM-SHA-1", cr: Credentials{Username: "user", Password: "pass"}, want: "SCRAM-SHA-1"},
		{name: "auto picks PLAIN over USER", sasl: "SASL PLAIN LOGIN", cr: Credentials{Username: "user", Password: "pass"},
			want: "PLAIN", wire: []string{"AUTH PLAIN " + b64("\x00user\x00pass")}},
		{name: "auto never picks APOP", sasl: "SASL LOGIN", opts: pop3test.Options{APOP: true}, cr: Credentials{Username: "user", Password: "pass"}, want: "USER"},
		{name: "auto with a token picks OAUTHBEARER", sasl: allSASL, opts: pop3test.Options{ValidToken: tokenIs("tok")},
			cr: Credentials{Username: "user", Password: "pass", Token: (&tokenStub{stale: "tok"}).fn}, want: "OAUTHBEARER",
			wireAt: func(port string) []string {
				return []string{"AUTH OAUTHBEARER " + b64("n,a=user,\x01host=127.0.0.1\x01port="+port+"\x01auth=Bearer tok\x01\x01")}
			}},
		{name: "auto with a token picks XOAUTH2 without OAUTHBEARER", sasl: "SASL PLAIN XOAUTH2", opts: pop3test.Options{ValidToken: tokenIs("tok")},
			cr: Credentials{Username: "user", Token: (&tokenStub{stale: "tok"}).fn}, want: "XOAUTH2"},
		{name: "user", sasl: allSASL, cr: Credentials{Mechanism: MechUser, Username: "user", Password: "pass"}, want: "USER"},
		{name: "apop", opts: pop3test.Options{APOP: true}, cr: Credentials{Mechanism: MechAPOP, Username: "user", Password: "pass"},
			// MD5("<1896.697170952@pop3test>pass")
			want: "APOP", prefix: []string{"APOP user "}},
		{name: "plain", sasl: allSASL, cr: Credentials{Mechanism: MechPlain, Username: "user", Password: "pass"}, want: "PLAIN"},
		{name: "plain, long password: two lines", sasl: allSASL, opts: pop3test.Options{Pass: long},
			cr: Credentials{Mechanism: MechPlain, Username: "user", Password: long}, want: "PLAIN",
			wire: []string{"AUTH PLAIN", b64("\x00user\x00" + long)}},
		{name: "scram-sha-1", sasl: allSASL, cr: Credentials{Mechanism: MechSCRAMSHA1, Username: "user", Password: "pass"}, want: "SCRAM-SHA-1"},
		{name: "scram-sha-256", sasl: allSASL, cr: Credentials{Mechanism: MechSCRAMSHA256, Username: "user", Password: "pass"}, want: "SCRAM-SHA-256",
			prefix: []string{"AUTH SCRAM-SHA-256 " + b64("n,,n=user,r=")[:12]}},
		{name: "xoauth2 in two lines", sasl: allSASL, opts: pop3test.Options{ValidToken: tokenIs("tok"), XOAUTH2TwoLine: true},
			cr: Credentials{Mechanism: MechXOAUTH2, Username: "user", Token: (&tokenStub{stale: "tok"}).fn}, want: "XOAUTH2",
			wire: []string{"AUTH XOAUTH2", b64("user=user\x01auth=Bearer tok\x01\x01")}},
		{name: "oauthbearer, long token: two lines", sasl: allSASL, opts: pop3test.Options{ValidToken: tokenIs(long)},
			cr: Credentials{Mechanism: MechOAUTHBEARER, Username: "user", Token: (&tokenStub{stale: long}).fn}, want: "OAUTHBEARER",
			wireAt: func(port string) []string {
				return []string{"AUTH OAUTHBEARER", b64("n,a=user,\x01host=127.0.0.1\x01port=" + port + "\x01auth=Bearer " + long + "\x01\x01")}
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := authServer(t, tt.opts, tt.sasl)
			c := dialAuth(t, srv)
			if err := c.Authenticate(context.Background(), tt.cr); err != nil {
				t.Fatalf("Authenticate: %v\n%s", err, srv.Transcript())
			}
			if got := srv.Logins(); !slices.Equal(got, []string{tt.want}) {
				t.Fatalf("server logins %q; want [%s]\n%s", got, tt.want, srv.Transcript())
			}
			if c.Mechanism().String() != tt.want {
				t.Errorf("Mechanism() = %s; want %s", c.Mechanism(), tt.want)
			}
			sent := afterGreeting(srv)
			if i := slices.Index(sent, "CAPA"); i >= 0 {
				sent = sent[:i]
			} else {
				t.Fatalf("no CAPA after login: %q", sent)
			}
			if tt.wireAt != nil {
				tt.wire = tt.wireAt(strconv.Itoa(srv.Port()))
			}
			if tt.wire != nil && !slices.Equal(sent, tt.wire) {
				t.Errorf("client sent %q; want %q", sent, tt.wire)
			}
			for i, p := range tt.prefix {
				if i >= len(sent) || !strings.HasPrefix(sent[i], p) {
					t.Errorf("client sent %q; want line %d to start with %q", sent, i, p)
				}
			}
			for _, l := range sent {
				if len(l)+2 > 255 && strings.HasPrefix(l, "AUTH ") {
					t.Errorf("command line of %d octets: %.40q…", len(l)+2, l)
				}
			}
			if _, _, err := c.Listing(); err != nil {
				t.Fatalf("Listing after login: %v", err)
			}
		})
	}
}

// TestAuthenticateRefused: what must fail, how it is classified, and what
// must not be sent: no second mechanism after a failure, no secret over a
// plain connection to another host, no exchange without a bound.
func TestAuthenticateRefused(t *testing.T) {
	// endless answers every line with another challenge.
	endless := func(c *pop3test.Conn) {
		for range 1000 {
			if c.WriteLine("+ ") != nil {
				return
			}
			if l, err := c.ReadLine(); err != nil || l == "*" {
				c.WriteLine("-ERR cancelled")
				return
			}
		}
	}
	huge := func(c *pop3test.Conn) { c.WriteLine("+ " + strings.Repeat("QUFB", 4<<10)) }
	notBase64 := func(c *pop3test.Conn) {
		c.WriteLine("+ not base64!")
		if l, _ := c.ReadLine(); l == "*" {
			c.WriteLine("-ERR cancelled")
			return
		}
		c.WriteLine("+OK but you did not cancel")
	}
	okAfterCancel := func(c *pop3test.Conn) {
		c.WriteLine("+ not base64!")
		c.ReadLine()
		c.WriteLine("+OK welcome anyway")
	}
	pw := Credentials{Username: "user", Password: "pass"}
	with := func(cr Credentials, m Mechanism) Credentials { cr.Mechanism = m; return cr }
	for _, tt := range []struct {
		name      string
		sasl      string
		opts      pop3test.Options
		cr        Credentials
		remote    bool // take the loopback server for a remote one
		wantErr   error
		wantText  []string
		broken    bool     // the session must have ended
		sent      []string // exactly the client's lines after CAPA; nil = not checked
		lastSent  string   // the client's last line, if set
		noSecrets bool     // no AUTH, APOP, USER or PASS left the client
		maxSent   int      // at most this many client lines; 0 = not checked
	}{
		{name: "wrong password, SCRAM: no fallback", sasl: allSASL, cr: Credentials{Username: "user", Password: "wrong"},
			wantErr: ErrAuth, wantText: []string{"SCRAM-SHA-256", "invalid credentials"}},
		{name: "wrong password, PLAIN: no fallback to USER", sasl: "SASL PLAIN", cr: Credentials{Username: "user", Password: "wrong"},
			wantErr: ErrAuth, sent: []string{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00wrong"))}},
		{name: "wrong SCRAM server signature", sasl: allSASL, opts: pop3test.Options{SCRAMBadSignature: true}, cr: pw,
			wantErr: ErrAuth, wantText: []string{"cannot prove that it knows the password"}, lastSent: "*"},
		{name: "endless continuations, PLAIN", sasl: "SASL PLAIN", opts: pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: endless}}},
			cr: pw, wantErr: ErrProtocol, wantText: []string{"unexpected challenge"}, lastSent: "*", maxSent: 2},
		{name: "endless continuations, SCRAM", sasl: "SASL SCRAM-SHA-256", opts: pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: endless}}},
			cr: pw, wantErr: ErrProtocol, wantText: []string{"server-first-message"}, lastSent: "*", maxSent: 2},
		{name: "endless continuations, XOAUTH2", sasl: "SASL XOAUTH2", opts: pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: endless}}},
			cr: Credentials{Username: "user", Token: (&tokenStub{stale: "tok"}).fn}, wantErr: ErrProtocol, broken: true, maxSent: 3},
		{name: "oversized challenge", sasl: "SASL SCRAM-SHA-256", opts: pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: huge}}},
			cr: pw, wantErr: ErrBudget, broken: true},
		{name: "challenge not base64: cancelled", sasl: "SASL SCRAM-SHA-256", opts: pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: notBase64}}},
			cr: pw, wantErr: ErrProtocol, wantText: []string{"not base64"}, lastSent: "*"},
		{name: "+OK after cancel ends the session", sasl: "SASL SCRAM-SHA-256", opts: pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: okAfterCancel}}},
			cr: pw, wantErr: ErrProtocol, broken: true, lastSent: "*"},
		{name: "PLAIN only, remote without TLS: nothing sent", sasl: "SASL PLAIN", cr: pw, remote: true,
			wantErr: ErrTLS, wantText: []string{"clear text"}, sent: []string{}, noSecrets: true},
		{name: "USER, remote without TLS: nothing sent", cr: pw, remote: true,
			wantErr: ErrMechanism, sent: []string{}, noSecrets: true},
		{name: "XOAUTH2, remote without TLS: nothing sent", sasl: "SASL XOAUTH2", remote: true,
			cr: Credentials{Username: "user", Token: (&tokenStub{stale: "tok"}).fn}, wantErr: ErrMechanism, sent: []string{}, noSecrets: true},
		{name: "explicit mechanism not offered: nothing sent", sasl: "SASL PLAIN", cr: with(pw, MechSCRAMSHA1),
			wantErr: ErrMechanism, wantText: []string{"offers SASL PLAIN only"}, sent: []string{}},
		{name: "APOP without a timestamp: nothing sent", cr: with(pw, MechAPOP),
			wantErr: ErrMechanism, wantText: []string{"no APOP timestamp"}, sent: []string{}},
		{name: "APOP with a malformed timestamp: nothing sent", opts: pop3test.Options{Greeting: "+OK hello <no-at-sign>"}, cr: with(pw, MechAPOP),
			wantErr: ErrMechanism, sent: []string{}},
		{name: "APOP, wrong password", opts: pop3test.Options{APOP: true}, cr: Credentials{Mechanism: MechAPOP, Username: "user", Password: "wrong"},
			wantErr: ErrAuth},
		{name: "OAuth2 with a server offering neither", sasl: "SASL PLAIN SCRAM-SHA-256", cr: Credentials{Username: "user", Token: (&tokenStub{stale: "tok"}).fn},
			wantErr: ErrMechanism, sent: []string{}},
		{name: "token source fails: nothing sent", sasl: allSASL, cr: Credentials{Username: "user", Token: (&tokenStub{err: errors.New("refresh: network down")}).fn},
			wantText: []string{"network down"}, sent: []string{}},
		{name: "token with a line break: nothing sent", sasl: allSASL, cr: Credentials{Username: "user", Token: (&tokenStub{stale: "a\r\nQUIT"}).fn},
			wantErr: ErrMechanism, sent: []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.remote {
				old := peerLoopback
				peerLoopback = func(net.Addr) bool { return false }
				t.Cleanup(func() { peerLoopback = old })
			}
			srv := authServer(t, tt.opts, tt.sasl)
			c := dialAuth(t, srv)
			err := c.Authenticate(context.Background(), tt.cr)
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Authenticate = %v; want %v\n%s", err, tt.wantErr, srv.Transcript())
			}
			for _, w := range tt.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(srv.Logins()) != 0 && !tt.broken {
				t.Errorf("server logins %q", srv.Logins())
			}
			if (c.Broken() != nil) != tt.broken {
				t.Errorf("Broken() = %v; want broken %v", c.Broken(), tt.broken)
			}
			sent := afterGreeting(srv)
			if tt.sent != nil && !slices.Equal(sent, tt.sent) {
				t.Errorf("client sent %q; want %q", sent, tt.sent)
			}
			if tt.lastSent != "" && (len(sent) == 0 || sent[len(sent)-1] != tt.lastSent) {
				t.Errorf("client sent %q; want it to end with %q", sent, tt.lastSent)
			}
			if n := slices.IndexFunc(sent, func(l string) bool { return strings.HasPrefix(l, "AUTH ") || l == "AUTH" }); n >= 0 {
				if more := slices.IndexFunc(sent[n+1:], func(l string) bool {
					return strings.HasPrefix(l, "AUTH") || strings.HasPrefix(l, "USER") || strings.HasPrefix(l, "APOP")
				}); more >= 0 {
					t.Errorf("a second mechanism after a failure: %q", sent)
				}
			}
			if tt.maxSent > 0 && len(sent) > tt.maxSent {
				t.Errorf("client sent %d lines; want at most %d: %q", len(sent), tt.maxSent, sent)
			}
			if tt.noSecrets && srv.SentCredentials() {
				t.Errorf("credentials sent: %q", sent)
			}
			if !tt.broken && c.Broken() == nil {
				// The session is still in step: the next command works.
				if err := c.capa(); err != nil {
					t.Errorf("CAPA after the failure: %v", err)
				}
			}
		})
	}
}

// scramClientNonce is the nonce in the client-first-message of the last
// AUTH SCRAM-SHA-256 command srv received (RFC 5802 §7: r= after the GS2
// header and the user name).
func scramClientNonce(srv *pop3test.Server) string {
	cmds := srv.Commands()
	_, ir, _ := strings.Cut(cmds[len(cmds)-1], "SCRAM-SHA-256 ")
	first, _ := base64.StdEncoding.DecodeString(ir)
	_, nonce, _ := strings.Cut(string(first), ",r=")
	return nonce
}

// TestSCRAMUnproven: a server that says +OK to SCRAM's client-final
// without sending its signature (RFC 5802 §5: the client must verify it)
// is refused, and nothing more is sent to it.
func TestSCRAMUnproven(t *testing.T) {
	var srv *pop3test.Server
	srv = authServer(t, pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
		nonce := scramClientNonce(srv)
		c.WriteLine("+ " + base64.StdEncoding.EncodeToString([]byte("r="+nonce+"srv,s=c2FsdA==,i=4096")))
		c.ReadLine()
		c.WriteLine("+OK welcome")
	}}}}, "SASL SCRAM-SHA-256")
	c := dialAuth(t, srv)
	err := c.Authenticate(context.Background(), Credentials{Username: "user", Password: "pass"})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "without proving") || c.Broken() == nil {
		t.Fatalf("Authenticate = %v (broken %v); want refused, session ended\n%s", err, c.Broken(), srv.Transcript())
	}
	if err := c.capa(); err == nil {
		t.Error("a command was sent after the unproven +OK")
	}
}

// TestSCRAMServerMessages: what a SCRAM server says is checked before the
// client computes or sends anything: the nonce must extend the client's,
// the PBKDF2 rounds are bounded, and an e= in the final message is a
// refusal of the credentials.
func TestSCRAMServerMessages(t *testing.T) {
	for _, tt := range []struct {
		name    string
		first   func(nonce string) string // the server-first-message
		final   string                    // the server-final-message, "" = none
		wantErr error
		want    string
	}{
		{"nonce not extended", func(string) string { return "r=other,s=c2FsdA==,i=4096" }, "", ErrProtocol, "did not extend"},
		{"too many iterations", func(n string) string { return "r=" + n + "x,s=c2FsdA==,i=100000000" }, "", ErrProtocol, "iterations"},
		{"e= in the final message", func(n string) string { return "r=" + n + "x,s=c2FsdA==,i=4096" }, "e=invalid-proof", ErrAuth, "refused the credentials (invalid-proof)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var srv *pop3test.Server
			srv = authServer(t, pop3test.Options{Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
				nonce := scramClientNonce(srv)
				c.WriteLine("+ " + base64.StdEncoding.EncodeToString([]byte(tt.first(nonce))))
				l, _ := c.ReadLine()
				if l != "*" && tt.final != "" {
					c.WriteLine("+ " + base64.StdEncoding.EncodeToString([]byte(tt.final)))
					l, _ = c.ReadLine()
				}
				if l == "*" {
					c.WriteLine("-ERR cancelled")
					return
				}
				c.WriteLine("+OK")
			}}}}, "SASL SCRAM-SHA-256")
			c := dialAuth(t, srv)
			err := c.Authenticate(context.Background(), Credentials{Username: "user", Password: "pass"})
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Authenticate = %v; want %v saying %q\n%s", err, tt.wantErr, tt.want, srv.Transcript())
			}
			if sent := afterGreeting(srv); sent[len(sent)-1] != "*" || c.Broken() != nil {
				t.Errorf("client sent %q (broken %v); want the exchange cancelled", sent, c.Broken())
			}
		})
	}
}

// TestAuthenticateCleartextOptIn: USER/PASS and PLAIN to a remote host
// without TLS need the explicit opt-in; SCRAM, which never shows the
// password, does not.
func TestAuthenticateCleartextOptIn(t *testing.T) {
	old := peerLoopback
	peerLoopback = func(net.Addr) bool { return false }
	t.Cleanup(func() { peerLoopback = old })
	for _, tt := range []struct {
		sasl string
		cr   Credentials
		want string
	}{
		{"", Credentials{Username: "user", Password: "pass", Cleartext: true}, "USER"},
		{"SASL PLAIN", Credentials{Username: "user", Password: "pass", Cleartext: true}, "PLAIN"},
		{"SASL SCRAM-SHA-256", Credentials{Username: "user", Password: "pass"}, "SCRAM-SHA-256"},
	} {
		srv := authServer(t, pop3test.Options{}, tt.sasl)
		c := dialAuth(t, srv)
		if err := c.Authenticate(context.Background(), tt.cr); err != nil || !slices.Equal(srv.Logins(), []string{tt.want}) {
			t.Errorf("%s: Authenticate = %v, logins %q", tt.want, err, srv.Logins())
		}
	}
}

// TestAuthenticateNoCredentialBeforeTLS: a server that offers SASL, then
// refuses STLS, gets no AUTH, no credential byte at all: the session never
// reaches Authenticate, and nothing but CAPA and STLS crossed the wire.
func TestAuthenticateNoCredentialBeforeTLS(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t)
	srv := pop3test.NewServer(t, pop3test.Options{TLS: serverTLS, STLS: true,
		Capa:   []string{"USER", "UIDL", allSASL},
		Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Reply, Reply: "-ERR not today"}}})
	o := plainOptions(srv)
	o.TLS, o.RootCAs = TLSStartTLS, pool
	c, err := Dial(context.Background(), o)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded after a refused STLS")
	}
	if !errors.Is(err, ErrTLS) {
		t.Errorf("Dial = %v; want ErrTLS", err)
	}
	if got := srv.Commands(); !slices.Equal(got, []string{"CAPA", "STLS"}) || srv.SentCredentials() {
		t.Errorf("the server received %q", got)
	}
}

// TestOAuthRetry: a rejected token is answered as RFC 7628 §3.2.3 and
// Google's XOAUTH2 documentation say (an empty response, or %x01 for
// OAUTHBEARER), its JSON error reported; one fresh token is asked for and
// tried once; rejected again, the error is ErrAuth.
func TestOAuthRetry(t *testing.T) {
	for _, m := range []Mechanism{MechXOAUTH2, MechOAUTHBEARER} {
		wantAnswer := ""
		if m == MechOAUTHBEARER {
			wantAnswer = "AQ=="
		}
		t.Run(m.String()+" fresh token accepted", func(t *testing.T) {
			srv := authServer(t, pop3test.Options{ValidToken: tokenIs("fresh")}, allSASL)
			c := dialAuth(t, srv)
			ts := &tokenStub{stale: "stale", fresh: "fresh"}
			if err := c.Authenticate(context.Background(), Credentials{Mechanism: m, Username: "user", Token: ts.fn}); err != nil {
				t.Fatalf("Authenticate: %v\n%s", err, srv.Transcript())
			}
			if !slices.Equal(ts.calls, []bool{false, true}) || !slices.Equal(srv.Tokens(), []string{"stale", "fresh"}) {
				t.Errorf("token calls %v, server saw %q", ts.calls, srv.Tokens())
			}
			if !slices.Contains(afterGreeting(srv), wantAnswer) && wantAnswer != "" {
				t.Errorf("no %q after the error challenge: %q", wantAnswer, afterGreeting(srv))
			}
		})
		t.Run(m.String()+" rejected twice", func(t *testing.T) {
			srv := authServer(t, pop3test.Options{ValidToken: tokenIs("none"),
				OAuthError: `{"status":"insufficient_scope","schemes":"bearer","scope":"https://outlook.office.com/POP.AccessAsUser.All"}`}, allSASL)
			c := dialAuth(t, srv)
			ts := &tokenStub{stale: "stale", fresh: "fresh"}
			err := c.Authenticate(context.Background(), Credentials{Mechanism: m, Username: "user", Token: ts.fn})
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("Authenticate = %v; want ErrAuth", err)
			}
			for _, w := range []string{"insufficient_scope", "POP.AccessAsUser.All", m.String()} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !slices.Equal(ts.calls, []bool{false, true}) || len(srv.Tokens()) != 2 {
				t.Errorf("token calls %v, server saw %d tokens; want one retry", ts.calls, len(srv.Tokens()))
			}
			var answers int
			for _, l := range afterGreeting(srv) {
				if l == wantAnswer {
					answers++
				}
			}
			if answers != 2 {
				t.Errorf("%d answers %q to the error challenge; want 2: %q", answers, wantAnswer, afterGreeting(srv))
			}
			if c.Broken() != nil {
				t.Errorf("session broken: %v", c.Broken())
			}
		})
	}
}

// TestSASLFraming: an empty initial response is "=" (RFC 5034 §4), and an
// initial response goes on the command line only if the line fits in 255
// octets.
func TestSASLFraming(t *testing.T) {
	for _, tt := range []struct {
		ir   []byte
		want []string
	}{
		{[]byte{}, []string{"AUTH XYZ ="}},
		{[]byte("abc"), []string{"AUTH XYZ YWJj"}},
		{bytes.Repeat([]byte("a"), 183), []string{"AUTH XYZ " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("a"), 183))}}, // 255 octets with CRLF
		{bytes.Repeat([]byte("a"), 184), []string{"AUTH XYZ", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("a"), 184))}},
	} {
		// Drive the framing directly with a mechanism of fixed responses.
		srv2 := pop3test.NewServer(t, pop3test.Options{Capa: []string{"SASL XYZ"}, Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			c.WriteLine("+ ")
			c.ReadLine()
			c.WriteLine("+OK")
		}}}})
		c := dialAuth(t, srv2)
		err := c.sasl("xyz", &fixed{ir: tt.ir}, false)
		sent := afterGreeting(srv2)
		if len(tt.want) == 1 {
			// One line: the server's "+ " is answered as a challenge.
			if err != nil || len(sent) < 1 || sent[0] != tt.want[0] {
				t.Errorf("ir %d bytes: %v, sent %q; want %q", len(tt.ir), err, sent, tt.want)
			}
			continue
		}
		if err != nil || !slices.Equal(sent, tt.want) {
			t.Errorf("ir %d bytes: %v, sent %q; want %q", len(tt.ir), err, sent, tt.want)
		}
	}
}

// TestSASLChallengeBound: a mechanism that would answer forever is cut
// off after maxChallenges challenges with "*", and the session goes on.
func TestSASLChallengeBound(t *testing.T) {
	seen := 0
	srv := pop3test.NewServer(t, pop3test.Options{Capa: []string{"SASL XYZ"}, Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
		for range 1000 {
			if c.WriteLine("+ ") != nil {
				return
			}
			l, err := c.ReadLine()
			if err != nil {
				return
			}
			if l == "*" {
				c.WriteLine("-ERR cancelled")
				return
			}
			seen++
		}
	}}}})
	c := dialAuth(t, srv)
	err := c.sasl("xyz", &fixed{ir: []byte("abc")}, false)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "more than 8 challenges") || c.Broken() != nil {
		t.Fatalf("sasl = %v (broken %v); want the exchange cancelled", err, c.Broken())
	}
	if seen != maxChallenges {
		t.Errorf("the client answered %d challenges; want %d", seen, maxChallenges)
	}
}

// fixed is a mechanism with a fixed initial response that answers every
// challenge with nothing.
type fixed struct{ ir []byte }

func (f *fixed) start() ([]byte, error)         { return f.ir, nil }
func (f *fixed) next(ch []byte) ([]byte, error) { return []byte{}, nil }
func (f *fixed) verified() bool                 { return true }

// FuzzDecodeChallenge: a challenge decodes only when it is canonical
// padded base64, and then encodes back to itself.
func FuzzDecodeChallenge(f *testing.F) {
	for _, s := range []string{"", "dGVzdA==", "dGVzdA", "not base64!", "cj1hYmMscz1zYWx0LGk9NDA5Ng==", "dGVzdB=="} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		b, err := decodeChallenge(text)
		if err != nil {
			return
		}
		if enc := base64.StdEncoding.EncodeToString(b); enc != string(text) {
			t.Fatalf("decodeChallenge(%q) = %q, which encodes as %q", text, b, enc)
		}
	})
}

// FuzzAPOPTimestamp: a timestamp found is part of the greeting, "<...@...>"
// with one "@", printable ASCII without spaces or angle brackets inside.
func FuzzAPOPTimestamp(f *testing.F) {
	for _, s := range []string{"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>", "+OK <a@b>", "+OK <@b>", "+OK <a@>", "+OK <a b@c>", "+OK <a@b@c>", "+OK Dovecot ready.", "+OK <x> <y@z>", "+OK <y@z> trailing"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, g []byte) {
		ts, ok := apopTimestamp(g)
		if !ok {
			return
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(ts, "<"), ">")
		if !bytes.Contains(g, []byte(ts)) || len(inner) != len(ts)-2 || strings.Count(inner, "@") != 1 ||
			strings.HasPrefix(inner, "@") || strings.HasSuffix(inner, "@") || len(ts) > apopTimestampMax ||
			strings.ContainsFunc(inner, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '<' || r == '>' }) {
			t.Fatalf("apopTimestamp(%q) = %q", g, ts)
		}
	})
}

// FuzzOAuthError: whatever a server puts in its error challenge, the
// client answers it with the response that lets the server finish, and
// the error reports it without control characters.
func FuzzOAuthError(f *testing.F) {
	f.Add([]byte(`{"status":"invalid_token","schemes":"bearer","scope":"https://mail.google.com/"}`))
	f.Add([]byte(`{"status":400}`))
	f.Add([]byte("not json \x1b[31m"))
	f.Add([]byte(`{"status":"\u001b[2J"}`))
	f.Fuzz(func(t *testing.T, ch []byte) {
		for _, m := range []Mechanism{MechXOAUTH2, MechOAUTHBEARER} {
			o := &oauthClient{m: m}
			resp, err := o.next(ch)
			var oe *OAuthError
			if !errors.As(err, &oe) {
				t.Fatalf("next(%q) = %v; want an *OAuthError", ch, err)
			}
			if want := map[Mechanism]string{MechXOAUTH2: "", MechOAUTHBEARER: "\x01"}[m]; resp == nil || string(resp) != want {
				t.Fatalf("%s: next(%q) responds %q", m, ch, resp)
			}
			if strings.ContainsFunc(oe.Status+oe.Scope+oe.Schemes, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("next(%q): unsanitized %+v", ch, oe)
			}
			if _, err := o.next(ch); err == nil {
				t.Fatal("a second challenge was answered")
			}
		}
	})
}
