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
// or String ever contains a token or the client secret.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

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
	return fmt.Sprintf("account %s: %s: %s; run `popfetch login %s` to sign in again", e.Account, ErrLoginRequired, e.Reason, e.Account)
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
}

// Options are a Source's optional settings.
type Options struct {
	HTTPClient *http.Client     // nil: one with a 30s timeout
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
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
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
	if s.cfg.Flow != rcfile.FlowClientCredentials {
		// Without the lock first: the common case (a valid token on
		// disk) costs one read.
		t, ok, err := readTokens(s.path)
		if err != nil {
			return "", s.wrap(err)
		}
		if ok && s.usable(t, fresh) {
			return s.hand(t), nil
		}
	}
	unlock, err := lockTokens(ctx, s.path)
	if err != nil {
		return "", s.wrap(err)
	}
	defer unlock()
	// Read again under the lock: another process may have refreshed (and
	// rotated the refresh token) while we waited.
	t, ok, err := readTokens(s.path)
	if err != nil {
		return "", s.wrap(err)
	}
	if ok && s.usable(t, fresh) {
		return s.hand(t), nil
	}
	nt, err := s.refresh(ctx, t, ok)
	if err != nil {
		return "", err
	}
	if err := writeTokens(s.path, nt); err != nil {
		// The new token works now, but a rotated refresh token that is
		// not on disk is lost at exit; say so loudly.
		s.log.Error("could not save the refreshed OAuth2 tokens; the next run may need popfetch login", "account", s.acct, "path", s.path, "err", err)
		return s.hand(nt), nil
	}
	return s.hand(nt), nil
}

func (s *Source) wrap(err error) error {
	return fmt.Errorf("account %s: oauth2 token: %w", s.acct, err)
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
}

// Info reads the token file without locking it.
func (s *Source) Info() (Info, error) {
	if s.path == "" {
		return Info{}, nil
	}
	t, ok, err := readTokens(s.path)
	if err != nil || !ok {
		return Info{Path: s.path}, err
	}
	return Info{Path: s.path, HasRefresh: t.RefreshToken != "", Expiry: t.Expiry, RefreshUsed: t.RefreshUsed}, nil
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
			return stored{}, s.classify(err)
		}
		return stored{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry, Obtained: now}, nil
	}
	if !have || t.RefreshToken == "" {
		return stored{}, &LoginRequiredError{Account: s.acct, Reason: "no refresh token stored in " + s.path}
	}
	src := config(s.cfg, secret, "").TokenSource(ctx, &oauth2.Token{RefreshToken: t.RefreshToken, Expiry: now.Add(-time.Hour)})
	tok, err := src.Token()
	if err != nil {
		return stored{}, s.classify(err)
	}
	nt := stored{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry, Obtained: now, RefreshUsed: now}
	if nt.RefreshToken == "" {
		nt.RefreshToken = t.RefreshToken // not rotated
	}
	if nt.RefreshToken != t.RefreshToken {
		s.log.Info("oauth2 refresh token rotated; saved", "account", s.acct)
	}
	s.log.Debug("oauth2 access token refreshed", "account", s.acct)
	return nt, nil
}

// classify turns a token endpoint failure into ErrLoginRequired (the
// grant is gone: RFC 6749 §5.2 invalid_grant; or the client is refused)
// or a temporary error. Neither quotes the response body.
func (s *Source) classify(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// Network, TLS, timeout: temporary; the daemon backs off.
		return s.wrap(fmt.Errorf("token endpoint unreachable: %w", err))
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	desc := clip(re.ErrorDescription, 200)
	switch re.ErrorCode {
	case "invalid_grant":
		return &LoginRequiredError{Account: s.acct, Reason: fmt.Sprintf("the identity provider refused the refresh token (invalid_grant: %s)", desc)}
	case "invalid_client", "unauthorized_client", "invalid_scope", "access_denied":
		return &LoginRequiredError{Account: s.acct, Reason: fmt.Sprintf("the identity provider refused the client (%s: %s); check client_id, client_secret and scopes", re.ErrorCode, desc)}
	}
	if status >= 500 || status == 429 || status == 0 {
		return s.wrap(fmt.Errorf("token endpoint failed (HTTP %d %s): temporary", status, re.ErrorCode))
	}
	if status == 400 || status == 401 {
		return &LoginRequiredError{Account: s.acct, Reason: fmt.Sprintf("the identity provider said HTTP %d %s", status, re.ErrorCode)}
	}
	return s.wrap(fmt.Errorf("token endpoint failed (HTTP %d %s)", status, re.ErrorCode))
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
