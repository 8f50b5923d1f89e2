package pop3test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"
)

// The server side of APOP (RFC 1939 §7) and of AUTH (RFC 5034) with the
// mechanisms PLAIN, SCRAM-SHA-1, SCRAM-SHA-256, XOAUTH2 and OAUTHBEARER:
// each is offered when Options.Capa has a "SASL" line naming it. AUTH with
// an initial response on the command line, and the two-line form ("AUTH
// MECH", "+", response); "*" cancels. The responses of an exchange are
// recorded in Commands like command lines (credentials included: tests look
// for them there).

// apopTimestamp is the msg-id the greeting carries with Options.APOP.
const apopTimestamp = "<1896.697170952@pop3test>"

// maxSASLLine bounds one client response of an exchange: unlike a command
// line (255 octets) it may carry a long token.
const maxSASLLine = 64 << 10

// scramSalt and scramIters are the fake server's stored SCRAM parameters.
const (
	scramSalt  = "pop3test-salt"
	scramIters = 4096
)

// defaultOAuthError is the JSON of the error challenge to a rejected token.
const defaultOAuthError = `{"status":"invalid_token","schemes":"bearer","scope":"https://mail.example.com/"}`

// offered reports whether mech is in the SASL line of Options.Capa.
func (ss *session) offered(mech string) bool {
	for _, c := range ss.s.opts.Capa {
		f := strings.Fields(c)
		if len(f) > 0 && strings.EqualFold(f[0], "SASL") {
			for _, m := range f[1:] {
				if strings.EqualFold(m, mech) {
					return true
				}
			}
		}
	}
	return false
}

// loggedIn is the answer to a successful login by mech.
func (ss *session) loggedIn(mech string) answer {
	return answer{data: line("+OK logged in"), commit: func() {
		ss.s.mu.Lock()
		ss.s.logins = append(ss.s.logins, mech)
		ss.s.mu.Unlock()
		ss.login()
	}}
}

func (ss *session) apop(args []string) answer {
	if !ss.s.opts.APOP {
		return errAnswer("APOP not supported")
	}
	if len(args) != 2 {
		return errAnswer("APOP needs two arguments")
	}
	sum := md5.Sum([]byte(apopTimestamp + ss.s.opts.Pass))
	if args[0] != ss.s.opts.User || args[1] != hex.EncodeToString(sum[:]) {
		return errAnswer("[AUTH] invalid credentials")
	}
	return ss.loggedIn("APOP")
}

// auth answers AUTH: the exchange runs when the answer is sent (see
// respond), unless a Fault replaces it.
func (ss *session) auth(arg string) answer {
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if mech == "" || !ss.offered(mech) {
		return errAnswer("unsupported mechanism")
	}
	return answer{exchange: func() (answer, bool) {
		x := &exchange{ss: ss}
		var resp []byte
		switch {
		case hasIR && mech == "XOAUTH2" && ss.s.opts.XOAUTH2TwoLine:
			// As Microsoft documents it: the token only after "+".
			return errAnswer("initial response not allowed"), true
		case hasIR && ir == "=":
			resp = []byte{}
		case hasIR:
			b, err := base64.StdEncoding.DecodeString(ir)
			if err != nil {
				return errAnswer("invalid base64"), true
			}
			resp = b
		default:
			var ok bool
			if resp, ok = x.challenge(nil); !ok {
				return x.end()
			}
		}
		switch mech {
		case "PLAIN":
			f := bytes.Split(resp, []byte{0})
			if len(f) != 3 || string(f[1]) != ss.s.opts.User || string(f[2]) != ss.s.opts.Pass {
				return errAnswer("[AUTH] invalid credentials"), true
			}
			return ss.loggedIn(mech), true
		case "SCRAM-SHA-1", "SCRAM-SHA-256":
			return x.scram(mech, resp)
		case "XOAUTH2", "OAUTHBEARER":
			return x.bearer(mech, resp)
		}
		return errAnswer("unsupported mechanism"), true
	}}
}

// exchange is one AUTH exchange in progress.
type exchange struct {
	ss        *session
	cancelled bool
	err       error
}

// challenge sends "+ base64(ch)" and reads the client's response. ok is
// false when the client cancelled ("*"), sent no base64, or went away.
func (x *exchange) challenge(ch []byte) ([]byte, bool) {
	if _, err := x.ss.write(line("+ " + base64.StdEncoding.EncodeToString(ch))); err != nil {
		x.err = err
		return nil, false
	}
	l, err := x.ss.readSASLLine()
	if err != nil {
		x.err = err
		return nil, false
	}
	if l == "*" {
		x.cancelled = true
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(l)
	if err != nil {
		x.err = errors.New("invalid base64")
		return nil, false
	}
	return b, true
}

// end is the answer after challenge failed.
func (x *exchange) end() (answer, bool) {
	switch {
	case x.cancelled:
		return errAnswer("authentication cancelled"), true
	case x.err != nil && x.err.Error() == "invalid base64":
		return errAnswer("invalid base64"), true
	}
	return answer{}, false
}

func (x *exchange) scram(mech string, c1 []byte) (answer, bool) {
	ss := x.ss
	h := scram.SHA256
	if mech == "SCRAM-SHA-1" {
		h = scram.SHA1
	}
	cl, err := h.NewClient(ss.s.opts.User, ss.s.opts.Pass, "")
	if err != nil {
		return errAnswer("bad credentials configured"), true
	}
	stored, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: scramSalt, Iters: scramIters})
	if err != nil {
		return errAnswer("bad credentials configured"), true
	}
	srv, err := h.NewServer(func(user string) (scram.StoredCredentials, error) {
		if user != ss.s.opts.User {
			return scram.StoredCredentials{}, errors.New("unknown user")
		}
		return stored, nil
	})
	if err != nil {
		return errAnswer("scram server"), true
	}
	conv := srv.NewConversation()
	s1, err := conv.Step(string(c1))
	if err != nil {
		return errAnswer("[AUTH] invalid client-first-message"), true
	}
	c2, ok := x.challenge([]byte(s1))
	if !ok {
		return x.end()
	}
	s2, err := conv.Step(string(c2))
	if err != nil || !conv.Valid() {
		return errAnswer("[AUTH] invalid credentials"), true
	}
	if ss.s.opts.SCRAMBadSignature {
		// An impostor that does not know the password: its server
		// signature cannot be right.
		s2 = "v=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	}
	if _, ok := x.challenge([]byte(s2)); !ok {
		return x.end()
	}
	return ss.loggedIn(mech), true
}

// bearer checks an XOAUTH2 ("user=U\x01auth=Bearer T\x01\x01") or
// OAUTHBEARER ("n,a=U,\x01auth=Bearer T\x01\x01", RFC 7628 §3.1) response.
// A rejected token gets the JSON error challenge; the client's answer to it
// (empty, or %x01) is followed by -ERR.
func (x *exchange) bearer(mech string, resp []byte) (answer, bool) {
	ss := x.ss
	user, tok, ok := parseBearer(mech, string(resp))
	ss.s.mu.Lock()
	ss.s.tokens = append(ss.s.tokens, tok)
	ss.s.mu.Unlock()
	if ok && user == ss.s.opts.User && ss.s.opts.ValidToken != nil && ss.s.opts.ValidToken(tok) {
		return ss.loggedIn(mech), true
	}
	msg := ss.s.opts.OAuthError
	if msg == "" {
		msg = defaultOAuthError
	}
	r, ok := x.challenge([]byte(msg))
	if !ok {
		return x.end()
	}
	want := ""
	if mech == "OAUTHBEARER" {
		want = "\x01"
	}
	if string(r) != want {
		return errAnswer(fmt.Sprintf("expected %q after the error challenge", want)), true
	}
	return errAnswer("[AUTH] invalid token"), true
}

// parseBearer splits a bearer mechanism's initial response.
func parseBearer(mech, s string) (user, tok string, ok bool) {
	if !strings.HasSuffix(s, "\x01\x01") {
		return "", "", false
	}
	f := strings.Split(strings.TrimSuffix(s, "\x01\x01"), "\x01")
	if mech == "OAUTHBEARER" {
		// gs2-header: "n,a=user," (or "n,,").
		gs2 := strings.Split(f[0], ",")
		if len(gs2) != 3 || gs2[0] != "n" {
			return "", "", false
		}
		user = strings.TrimPrefix(gs2[1], "a=")
		f = f[1:]
	}
	for _, kv := range f {
		if v, found := strings.CutPrefix(kv, "user="); found && mech == "XOAUTH2" {
			user = v
		}
		if v, found := strings.CutPrefix(kv, "auth=Bearer "); found {
			tok, ok = v, true
		}
	}
	return user, tok, ok
}

// readSASLLine reads one response of an exchange, at most maxSASLLine
// bytes, and records it like a command (cut to 512 bytes).
func (ss *session) readSASLLine() (string, error) {
	var buf []byte
	for {
		frag, err := ss.r.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxSASLLine {
			return "", errTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	l := strings.TrimSuffix(strings.TrimSuffix(string(buf), "\n"), "\r")
	ss.s.mu.Lock()
	ss.s.commands = append(ss.s.commands, l[:min(len(l), keepCommand)])
	fmt.Fprintf(ss.log, "C: %s\n", l[:min(len(l), 160)])
	ss.s.mu.Unlock()
	return l, nil
}

// Logins returns the mechanism of every successful login, in order, across
// sessions: "USER", "APOP", or the SASL name.
func (s *Server) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

// Tokens returns every bearer token a client presented (XOAUTH2,
// OAUTHBEARER), in order, across sessions.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}
