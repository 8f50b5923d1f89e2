package oauth

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/popfetch/popfetch/rcfile"
)

// LoginTimeout bounds a whole sign-in: a device code expires sooner
// (Microsoft: 15 minutes), and nobody waits longer at a browser.
const LoginTimeout = 15 * time.Minute

// ErrNoLoginNeeded: client_credentials authenticates the application
// itself; there is nothing for a human to sign in to.
var ErrNoLoginNeeded = errors.New("no sign-in needed: flow = \"client_credentials\" uses the application's own credentials")

// LoginIO is where a sign-in talks to the human.
type LoginIO struct {
	Out io.Writer // instructions: the URL and code to open
	// In is read for a pasted redirect URL (browser flow), for a machine
	// without a browser; nil or EOF leaves only the loopback redirect.
	In io.Reader
	// Listen is the loopback address of the redirect listener; ""
	// means 127.0.0.1 on a free port (RFC 8252 §7.3: the port may vary).
	Listen string
}

// Login signs the account in with its configured flow and saves the
// tokens, replacing any old ones. It returns ErrNoLoginNeeded for
// client_credentials.
func (s *Source) Login(ctx context.Context, io LoginIO) error {
	if s.cfg == nil {
		return errors.New("the account uses oauth2_token_command: its helper signs in, not popfetch")
	}
	if s.cfg.Flow == rcfile.FlowClientCredentials {
		return ErrNoLoginNeeded
	}
	secret, err := s.cfg.Secret()
	if err != nil {
		return s.wrap(err)
	}
	// Before the human is asked for anything: tokens must not be saved
	// where another user could replace them.
	if err := checkStateDir(filepath.Dir(s.path)); err != nil {
		return s.wrap(err)
	}
	ctx, cancel := context.WithTimeout(ctx, LoginTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	var tok *oauth2.Token
	switch s.cfg.Flow {
	case rcfile.FlowDevice:
		tok, err = s.deviceLogin(ctx, secret, io)
	default:
		tok, err = s.browserLogin(ctx, secret, io)
	}
	if err != nil {
		return err
	}
	if tok.RefreshToken == "" {
		// Without it every access token expiry would need a human.
		return errors.New("the identity provider issued no refresh token; check that the scopes allow offline access (Microsoft: offline_access)")
	}
	now := s.now()
	unlock, err := lockTokens(ctx, s.path)
	if err != nil {
		return s.wrap(err)
	}
	defer unlock()
	t := stored{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry, Obtained: now}
	if exp := refreshExpiry(tok, now); !exp.IsZero() {
		t.RefreshExpiry, t.RefreshIssued = exp, now
	}
	if err := writeTokens(s.path, t); err != nil {
		return s.wrap(err)
	}
	fmt.Fprintf(io.Out, "Signed in; tokens saved in %s.\n", s.path)
	return nil
}

func (s *Source) deviceLogin(ctx context.Context, secret string, lio LoginIO) (*oauth2.Token, error) {
	c := config(s.cfg, secret, "")
	da, err := c.DeviceAuth(ctx)
	if err != nil {
		return nil, s.loginErr("device authorization request", err, secret)
	}
	uri := da.VerificationURIComplete
	if uri == "" {
		uri = da.VerificationURI
	}
	fmt.Fprintf(lio.Out, "To sign in account %s, open %s and enter the code %s\n", s.acct, oneLine(da.VerificationURI), oneLine(da.UserCode))
	if uri != da.VerificationURI {
		fmt.Fprintf(lio.Out, "(or open %s)\n", oneLine(uri))
	}
	fmt.Fprintf(lio.Out, "Waiting for the sign-in (until %s)...\n", expiryText(da.Expiry, s.now().Add(LoginTimeout)))
	tok, err := c.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, s.loginErr("device sign-in", err, secret, da.DeviceCode)
	}
	return tok, nil
}

func expiryText(t, def time.Time) string {
	if t.IsZero() || t.After(def) {
		t = def
	}
	return t.Format("15:04:05")
}

// browserLogin runs the authorization code flow with PKCE. The redirect
// goes to a listener on 127.0.0.1 (RFC 8252 §7.3); on a machine without
// a browser the user opens the URL elsewhere and pastes the address the
// browser was sent to (which fails to load there) back here.
func (s *Source) browserLogin(ctx context.Context, secret string, lio LoginIO) (*oauth2.Token, error) {
	addr := lio.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := loopbackAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("loopback redirect listener: %w", err)
	}
	defer ln.Close()
	// No path: it matches a registration of plain http://127.0.0.1,
	// whose port providers ignore for loopback (RFC 8252 §7.3).
	redirect := "http://" + ln.Addr().String()
	c := config(s.cfg, secret, redirect)
	state := randomString()
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if s.cfg.Provider == rcfile.ProviderGoogle {
		// Google issues a refresh token only for offline access, and a
		// second one only with consent asked again.
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	authURL := c.AuthCodeURL(state, opts...)

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 2)
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			code, err := codeFrom(r.URL.Query(), state)
			if err != nil {
				http.Error(w, "popfetch: "+err.Error(), http.StatusBadRequest)
			} else {
				fmt.Fprintf(w, "<!doctype html><title>popfetch</title><p>popfetch: account %s signed in. You can close this window.</p>\n", html.EscapeString(s.acct))
			}
			if err == nil || r.URL.Query().Get("state") == state {
				select {
				case done <- result{code, err}:
				default: // a second redirect; the first one counts
				}
			}
		}),
	}
	go srv.Serve(ln)
	defer func() {
		// Shutdown, not Close: the handler hands the code over before
		// its page is sent, and Close would cut the browser off (EOF)
		// when the exchange is quick. Bounded, as a browser may hold a
		// connection open.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		srv.Close()
	}()

	fmt.Fprintf(lio.Out, "To sign in account %s, open this URL in a browser:\n\n  %s\n\n", s.acct, authURL)
	fmt.Fprintf(lio.Out, "Waiting for the redirect to %s ...\nOn a machine without a browser, open the URL elsewhere, then paste here the address the browser was sent to (it will not load) and press Enter.\n", redirect)
	if lio.In != nil {
		go func() {
			sc := bufio.NewScanner(lio.In)
			sc.Buffer(make([]byte, 0, 4096), 64<<10)
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if line == "" {
					continue
				}
				u, err := url.Parse(line)
				if err != nil || u.RawQuery == "" {
					fmt.Fprintln(lio.Out, "That is not the redirect address (it has ?code=...&state=...); paste the whole address.")
					continue
				}
				code, err := codeFrom(u.Query(), state)
				select {
				case done <- result{code, err}:
				default:
				}
				return
			}
		}()
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return nil, errors.New("the sign-in was not completed in time; run popfetch login again")
	}
	if res.err != nil {
		return nil, res.err
	}
	tok, err := c.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, s.loginErr("authorization code exchange", err, secret, res.code, verifier)
	}
	return tok, nil
}

// codeFrom takes the authorization code from a redirect's query,
// checking the state (RFC 6749 §10.12: CSRF) and reporting the
// provider's error (§4.1.2.1).
func codeFrom(q url.Values, state string) (string, error) {
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("the identity provider refused the sign-in: %s %s", clip(e, 80), clip(q.Get("error_description"), 200))
	}
	if q.Get("state") != state {
		return "", errors.New("the redirect's state does not match this sign-in (an old or forged redirect)")
	}
	code := q.Get("code")
	if code == "" {
		return "", errors.New("the redirect carries no authorization code")
	}
	return code, nil
}

// loginErr describes a failed step of a sign-in; the provider's text is
// quoted with the secrets of the request masked (see providerText):
// secret is the client secret, others the rest.
func (s *Source) loginErr(what string, err error, secret string, others ...string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("the sign-in was not completed in time; run popfetch login again")
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		secrets := s.masks(secret, others...)
		return fmt.Errorf("%s: the identity provider said %s: %s", what, providerText(re.ErrorCode, 80, secrets...), providerText(re.ErrorDescription, 200, secrets...))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// loopbackAddr accepts only a listen address on a loopback IP (RFC 8252
// §7.3: the redirect listener must not be reachable from the network),
// given as a literal: a name could resolve to anything.
func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("redirect listener address %s: %w", clip(addr, 100), err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("redirect listener address %s: must be a loopback address such as 127.0.0.1:0 or [::1]:8400 (the redirect carries the authorization code)", clip(addr, 100))
	}
	return nil
}

func oneLine(s string) string { return clip(s, 512) }

func randomString() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
