// Package oauth keeps an account's OAuth2 access token fresh: it signs in
// once (Login: the device flow of RFC 8628, or the authorization code
// flow of RFC 6749 §4.1 with RFC 7636 PKCE and a loopback redirect, RFC
// 8252 §7.3), stores the tokens in the state directory, and hands out a
// valid access token on demand (Source.Token), refreshing it ahead of its
// expiry or when the server rejected it. Its one job is the token
// lifecycle; the SASL mechanisms that send the token are package
// fetch/pop3's.
//
// Tokens live in one file per account (TokenPath), mode 0600, replaced
// atomically (write, fsync, rename, fsync of the directory); a file that
// group or others can read is refused. A lock file serialises refreshes
// across processes, and the file is read again after the lock is taken,
// so a refresh token rotated by another process is used, never
// overwritten with a stale one.
//
// Errors: ErrLoginRequired when a human must run `popfetch login ACCOUNT`
// (the refresh token was revoked, expired, or never obtained): package
// fetch turns it into an authentication hold. Any other error (the
// identity provider unreachable, a 5xx) is temporary. No error, log line
// or String ever contains a token or the client secret, nor the name of
// the account: the caller's logger and error context (the session, or
// `popfetch login`) name it once.
package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/popfetch/popfetch/internal/redact"
	"github.com/popfetch/popfetch/rcfile"
)

// ErrLoginRequired: no usable refresh token; a human must sign in again
// with `popfetch login ACCOUNT`. Retrying on a schedule cannot help.
var ErrLoginRequired = errors.New("oauth2 sign-in required")

// LoginRequiredError says which account needs `popfetch login` and why.
// It matches ErrLoginRequired with errors.Is.
type LoginRequiredError struct {
	Account string
	Reason  string // the provider's error code and description, or what is missing
}

func (e *LoginRequiredError) Error() string {
	return fmt.Sprintf("%s: %s; run `popfetch login %s` to sign in again", ErrLoginRequired, e.Reason, e.Account)
}

func (e *LoginRequiredError) Is(target error) bool { return target == ErrLoginRequired }

// RefreshAhead is how long before its expiry an access token is
// refreshed, so that it cannot expire between Token and the server
// checking it (clock skew, a slow TLS handshake).
const RefreshAhead = 5 * time.Minute

// Source hands out the access token of one account.
type Source struct {
	acct    string
	path    string
	cfg     *rcfile.OAuth2
	command []string
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
	mu      sync.Mutex
	last    string // the access token Token returned last: the one a server may reject
	// handed counts the tokens handed out that differ from the one
	// before; a caller that finds it changed while it waited for mu gets
	// the newer token instead of refreshing again.
	handed atomic.Int64
	// unsaved holds refreshed tokens that could not be written (disk
	// full, permissions); nil when the file is current. After a rotation
	// the refresh token on disk is dead, and presenting it again would
	// make a provider with reuse detection revoke the whole grant, so the
	// next refresh uses these, and every later call tries the save again.
	// unsavedBase is the refresh token on disk when they were obtained:
	// a file with another one was written since (popfetch login) and
	// wins.
	unsaved     *stored
	unsavedBase string
}

// Options are a Source's optional settings.
type Options struct {
	HTTPClient *http.Client     // nil: one with a 30s timeout; its redirects are refused either way
	Log        *slog.Logger     // nil: discard
	Now        func() time.Time // nil: time.Now
}

// New returns the token source of account a: its oauth2 block (tokens in
// a's state directory) or its oauth2_token_command. It returns nil, nil
// if a has neither.
func New(a *rcfile.Account, o Options) (*Source, error) {
	if a.OAuth2 == nil && a.OAuth2TokenCommand == nil {
		return nil, nil
	}
	s := &Source{acct: a.Name, cfg: a.OAuth2, command: a.OAuth2TokenCommand, client: o.HTTPClient, now: o.Now, log: o.Log}
	if a.OAuth2 != nil {
		s.path = TokenPath(a.StateDir, a.Name)
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 30 * time.Second}
	} else {
		c := *s.client
		s.client = &c
	}
	s.client.CheckRedirect = refuseRedirect
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// refuseRedirect is the HTTP client's redirect policy: none is followed.
// A token, device authorization or introspection endpoint has no reason
// to redirect, and Go's client would re-post the form (refresh token,
// client secret, code) after a 307 or 308, wherever it points, plain
// http included.
func refuseRedirect(req *http.Request, via []*http.Request) error {
	return fmt.Errorf("the identity provider's endpoint %s redirected to %s://%s; popfetch follows no redirect from an OAuth2 endpoint (it would send the credentials again): set the final address in the oauth2 block",
		clip(via[0].URL.Host+via[0].URL.Path, 200), clip(req.URL.Scheme, 10), clip(req.URL.Host, 200))
}

// Path is the token file ("" for oauth2_token_command).
func (s *Source) Path() string { return s.path }

// Token returns an access token for the account. fresh=true means the
// server rejected the last one: Token then returns a newer one (another
// process may have refreshed already) or refreshes. It has the signature
// of package fetch/pop3's TokenFunc.
func (s *Source) Token(ctx context.Context, fresh bool) (string, error) {
	if s.command != nil {
		// The helper owns the lifecycle; ask it every time.
		return rcfile.RunTokenCommand(ctx, s.command)
	}
	seen := s.handed.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if fresh && s.handed.Load() != seen {
		// Another caller of this Source got a newer token while this
		// one waited: that is the answer to this caller's rejection.
		fresh = false
	}
	if s.cfg.Flow != rcfile.FlowClientCredentials && s.unsaved == nil {
		// Without the lock first: the common case (a valid token on
		// disk) costs one read.
		// A corrupt file is decided under the lock: a killed process
		// may have left complete tokens in a temporary file beside it
		// (recoverTemp).
		t, ok, err := readTokens(s.path)
		if err != nil && !errors.Is(err, errCorrupt) {
			return "", s.readErr(err)
		}
		if err == nil && ok && s.usable(t, fresh) {
			return s.hand(t), nil
		}
	}
	unlock, err := lockTokens(ctx, s.path)
	if err != nil {
		return "", s.wrap(err)
	}
	defer unlock()
	s.recoverTemp()
	// Read again under the lock: another process may have refreshed (and
	// rotated the refresh token) while we waited.
	t, ok, err := readTokens(s.path)
	if err != nil {
		return "", s.readErr(err)
	}
	onDisk := t.RefreshToken
	if s.unsaved != nil {
		if ok && t.RefreshToken != s.unsavedBase {
			// Written since (popfetch login): the file wins.
			s.unsaved = nil
		} else {
			t, ok = *s.unsaved, true
			s.save(t, s.unsavedBase)
		}
	}
	if ok && s.usable(t, fresh) {
		return s.hand(t), nil
	}
	nt, err := s.refresh(ctx, t, ok)
	if err != nil {
		return "", err
	}
	s.save(nt, onDisk)
	return s.hand(nt), nil
}

// recoverTemp adopts or removes temporary token files left by a killed
// process (see recoverTemp in store.go); the caller holds the lock.
func (s *Source) recoverTemp() {
	var ours time.Time
	if s.unsaved != nil {
		ours = s.unsaved.Obtained
	}
	adopted, err := recoverTemp(s.path, ours)
	if err != nil {
		s.log.Warn("could not clean up a temporary token file", "path", s.path, "err", err)
	}
	if adopted {
		s.log.Warn("adopted the newer tokens of a popfetch process that was stopped while saving them", "path", s.path)
	}
}

// save writes t to the token file. If that fails, t stays in memory
// (unsaved, see Source) and the failure is logged: the refresh token may
// exist nowhere else.
func (s *Source) save(t stored, onDisk string) {
	err := writeTokens(s.path, t)
	switch {
	case err == nil && s.unsaved != nil:
		s.unsaved = nil
		s.log.Info("oauth2 tokens kept in memory are saved now", "path", s.path)
	case err != nil:
		if s.unsaved == nil {
			s.unsavedBase = onDisk
		}
		s.unsaved = &t
		s.log.Error("could not save the refreshed OAuth2 tokens: they are only in memory, and popfetch login will be needed if popfetch stops before a save succeeds; popfetch tries again at each use: make the state directory writable (disk full? permissions?)",
			"path", s.path, "err", err)
	}
}

// readErr is a failure to read the token file: a corrupt one needs a new
// sign-in, anything else (permissions, a foreign file) the operator.
func (s *Source) readErr(err error) error {
	if errors.Is(err, errCorrupt) {
		return &LoginRequiredError{Account: s.acct, Reason: err.Error()}
	}
	return s.wrap(err)
}

func (s *Source) wrap(err error) error {
	return fmt.Errorf("oauth2 token: %w", err)
}

// usable says whether t's access token can be handed out: valid for
// RefreshAhead more, and, when the server rejected the last one, another
// than that.
func (s *Source) usable(t stored, fresh bool) bool {
	if t.AccessToken == "" || t.Expiry.IsZero() && t.RefreshToken != "" {
		return false
	}
	if fresh && (s.last == "" || t.AccessToken == s.last) {
		// Rejected: the one handed out last, or, by a Source that has
		// handed out none yet, whatever is on disk.
		return false
	}
	return t.Expiry.IsZero() || s.now().Add(RefreshAhead).Before(t.Expiry)
}

func (s *Source) hand(t stored) string {
	if t.AccessToken != s.last {
		s.handed.Add(1)
	}
	s.last = t.AccessToken
	return t.AccessToken
}

// Info is what `popfetch status` can show of the account's tokens.
type Info struct {
	Path        string
	HasRefresh  bool
	Expiry      time.Time // of the access token
	RefreshUsed time.Time // when the refresh token last got an access token
	// RefreshExpiry is when the refresh token stops working, if the
	// provider said so (zero: not known to expire); RefreshIssued is when
	// that token's life began.
	RefreshExpiry time.Time
	RefreshIssued time.Time
}

// Info reads the token file without locking it.
func (s *Source) Info() (Info, error) {
	if s.path == "" {
		return Info{}, nil
	}
	return ReadInfo(s.path)
}

// ReadInfo reads the token file at path (TokenPath) without locking it,
// for a reader that has no Source (the alerts); a missing file is an
// Info with only Path. No token is returned.
func ReadInfo(path string) (Info, error) {
	t, ok, err := readTokens(path)
	if err != nil || !ok {
		return Info{Path: path}, err
	}
	return Info{Path: path, HasRefresh: t.RefreshToken != "", Expiry: t.Expiry, RefreshUsed: t.RefreshUsed,
		RefreshExpiry: t.RefreshExpiry, RefreshIssued: t.RefreshIssued}, nil
}

// maxRefreshLife bounds a refresh_token_expires_in popfetch believes: a
// larger value (or a negative or malformed one) is no known expiry.
const maxRefreshLife = 10 * 365 * 24 * time.Hour

// refreshExpiry is when the refresh token of a token response expires:
// now plus its refresh_token_expires_in (seconds; Google sends it for
// refresh tokens with a time limit), or zero if the response has none
// or one that makes no sense. JSON gives a number, a form-encoded
// response (RFC 6749 allows neither, but GitHub-style providers send
// one) a string.
func refreshExpiry(tok *oauth2.Token, now time.Time) time.Time {
	var sec float64
	switch v := tok.Extra("refresh_token_expires_in").(type) {
	case float64:
		sec = v
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return time.Time{}
		}
		sec = f
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return time.Time{}
		}
		sec = f
	default:
		return time.Time{}
	}
	if !(sec > 0) || sec > maxRefreshLife.Seconds() {
		return time.Time{}
	}
	return now.Add(time.Duration(sec * float64(time.Second)))
}

// config is the oauth2 library's view of the client.
func config(o *rcfile.OAuth2, secret, redirect string) *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if o.Provider == rcfile.ProviderGeneric {
		style = oauth2.AuthStyleAutoDetect
	}
	return &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:       o.AuthURL,
			TokenURL:      o.TokenURL,
			DeviceAuthURL: o.DeviceURL,
			AuthStyle:     style,
		},
		RedirectURL: redirect,
		Scopes:      o.Scopes,
	}
}

// refresh gets a new access token: with the refresh token, or for
// client_credentials with the client's own credentials.
func (s *Source) refresh(ctx context.Context, t stored, have bool) (stored, error) {
	secret, err := s.cfg.Secret()
	if err != nil {
		return stored{}, s.wrap(err)
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	now := s.now()
	if s.cfg.Flow == rcfile.FlowClientCredentials {
		cc := clientcredentials.Config{ClientID: s.cfg.ClientID, ClientSecret: secret, TokenURL: s.cfg.TokenURL, Scopes: s.cfg.Scopes, AuthStyle: config(s.cfg, "", "").Endpoint.AuthStyle}
		tok, err := cc.Token(ctx)
		if err != nil {
			return stored{}, s.classify(err, secret)
		}
		return stored{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry, Obtained: now}, nil
	}
	if !have || t.RefreshToken == "" {
		return stored{}, &LoginRequiredError{Account: s.acct, Reason: "no refresh token stored in " + s.path}
	}
	src := config(s.cfg, secret, "").TokenSource(ctx, &oauth2.Token{RefreshToken: t.RefreshToken, Expiry: now.Add(-time.Hour)})
	tok, err := src.Token()
	if err != nil {
		return stored{}, s.classify(err, secret, t.RefreshToken, t.AccessToken)
	}
	nt := stored{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry, Obtained: now, RefreshUsed: now}
	if nt.RefreshToken == "" {
		nt.RefreshToken = t.RefreshToken // not rotated
	}
	rotated := nt.RefreshToken != t.RefreshToken
	if rotated {
		s.log.Info("oauth2 refresh token rotated")
	}
	switch exp := refreshExpiry(tok, now); {
	case !exp.IsZero():
		// Said again (Google says it at every refresh, counting
		// down): the life still runs from when the token was issued.
		nt.RefreshExpiry, nt.RefreshIssued = exp, t.RefreshIssued
		if rotated || nt.RefreshIssued.IsZero() || nt.RefreshIssued.After(now) {
			nt.RefreshIssued = now
		}
	case !rotated:
		// The same refresh token, with the same end.
		nt.RefreshExpiry, nt.RefreshIssued = t.RefreshExpiry, t.RefreshIssued
	}
	// A rotated refresh token with no expiry given is a new token whose
	// end is unknown: the old one's does not apply to it.
	s.log.Debug("oauth2 access token refreshed")
	return nt, nil
}

// classify turns a token endpoint failure into ErrLoginRequired (the
// grant is gone: RFC 6749 §5.2 invalid_grant; or the client is refused)
// or a temporary error. Neither quotes the response body; the provider's
// error_description is quoted with the secrets of the request masked
// (see providerText): secret is the client secret, others the rest.
func (s *Source) classify(err error, secret string, others ...string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// Network, TLS, timeout: temporary; the daemon backs off.
		return s.wrap(fmt.Errorf("token endpoint unreachable: %w", err))
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	secrets := s.masks(secret, others...)
	desc := providerText(re.ErrorDescription, 200, secrets...)
	code := providerText(re.ErrorCode, 80, secrets...)
	switch re.ErrorCode {
	case "invalid_grant":
		return &LoginRequiredError{Account: s.acct, Reason: fmt.Sprintf("the identity provider refused the refresh token (invalid_grant: %s)", desc)}
	case "invalid_client", "unauthorized_client", "invalid_scope", "access_denied":
		return &LoginRequiredError{Account: s.acct, Reason: fmt.Sprintf("the identity provider refused the client (%s: %s); check client_id, client_secret and scopes", code, desc)}
	}
	if status >= 500 || status == 429 || status == 0 {
		return s.wrap(fmt.Errorf("token endpoint failed (HTTP %d %s): temporary", status, code))
	}
	if status == 400 || status == 401 {
		return &LoginRequiredError{Account: s.acct, Reason: fmt.Sprintf("the identity provider said HTTP %d %s", status, code)}
	}
	return s.wrap(fmt.Errorf("token endpoint failed (HTTP %d %s)", status, code))
}

// masks are the secrets of a request to the identity provider in every
// form an echo of the request may show: as given, percent-encoded (the
// form body, RFC 6749 §4.1.3, §6) and, for the client secret, as HTTP
// Basic credentials (RFC 6749 §2.3.1).
func (s *Source) masks(secret string, others ...string) []string {
	return append(redact.Encoded(append([]string{secret}, others...)...), redact.Basic(s.cfg.ClientID, secret)...)
}

// providerText is text from the identity provider (an error code or
// description) made fit for an error: every secret of the request masked
// (a provider, or a proxy in front of it, that echoes the request would
// hand back the refresh token or the client secret), control characters
// replaced, at most n bytes.
func providerText(text string, n int, secrets ...string) string {
	return clip(redact.Secrets(text, secrets...), n)
}

func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
