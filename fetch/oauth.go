package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/rcfile"
)

// TokenFunc gives an OAuth2 access token to the SASL login (XOAUTH2,
// OAUTHBEARER); fresh=true means the server rejected the last one. It has
// the shape of package fetch/pop3's TokenFunc.
type TokenFunc = func(ctx context.Context, fresh bool) (string, error)

// OAuth2Token returns account a's TokenFunc (package fetch/oauth keeps
// the token fresh), or nil if a signs in with a password. When a human
// must sign in again (the refresh token was revoked or expired, or there
// never was one), the error wraps ErrAuth, so the daemon holds the account
// instead of retrying, and its text says to run `popfetch login ACCOUNT`;
// a provider that cannot be reached is a temporary failure.
func OAuth2Token(a *rcfile.Account, log *slog.Logger) (TokenFunc, error) {
	tf, _, err := oauth2Token(a, log)
	return tf, err
}

// ErrTokenRefresh: no OAuth2 access token could be obtained from the
// account's token store (the identity provider refused the refresh token,
// or could not be reached). With ErrAuth as well, a human must sign in
// again; alone, it is temporary.
var ErrTokenRefresh = errors.New("oauth2 access token not obtained")

// oauth2Token is OAuth2Token that also returns the Source behind the
// TokenFunc.
func oauth2Token(a *rcfile.Account, log *slog.Logger) (TokenFunc, *oauth.Source, error) {
	src, err := oauth.New(a, oauth.Options{Log: log})
	if err != nil || src == nil {
		return nil, nil, err
	}
	return func(ctx context.Context, fresh bool) (string, error) {
		tok, err := src.Token(ctx, fresh)
		if errors.Is(err, oauth.ErrLoginRequired) {
			return "", fmt.Errorf("%w: %w: %w", ErrAuth, ErrTokenRefresh, err)
		}
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrTokenRefresh, err)
		}
		return tok, nil
	}, src, nil
}

// oauthSources keeps one oauth.Source per account for a Poller's
// lifetime. A Source holds in memory a rotated refresh token it could not
// save (disk full); a new Source per poll would read the rotated-away one
// from disk again, and a provider with reuse detection revokes the whole
// grant when it is presented. A Source is built again only when the
// account's oauth2 settings change (a reloaded rc file).
type oauthSources struct {
	mu sync.Mutex
	m  map[string]oauthSource // by account name
}

type oauthSource struct {
	acct *rcfile.Account // the settings the source was built from
	tf   TokenFunc
	src  *oauth.Source
}

// token returns account a's TokenFunc as OAuth2Token does, the same one
// for as long as a's oauth2 settings stay the same.
func (c *oauthSources) token(a *rcfile.Account, log *slog.Logger) (TokenFunc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[a.Name]; ok && rcfile.SameSignIn(e.acct, a) {
		return e.tf, nil
	}
	tf, src, err := oauth2Token(a, log)
	if err != nil {
		return nil, err
	}
	if src == nil {
		// A password account: no token to keep between polls. Keeping
		// a copy of its settings anyway cost about 1 KB per account,
		// for every account of a daemon. A source it had before a
		// reload made it a password account goes.
		delete(c.m, a.Name)
		return nil, nil
	}
	if c.m == nil {
		c.m = make(map[string]oauthSource)
	}
	c.m[a.Name] = oauthSource{acct: signInOf(a), tf: tf, src: src}
	return tf, nil
}

// signInOf copies what rcfile.SameSignIn compares, so that a caller that
// edits its Account afterwards (tests do) cannot make the cache's copy
// agree with it.
func signInOf(a *rcfile.Account) *rcfile.Account {
	c := &rcfile.Account{StateDir: a.StateDir, OAuth2TokenCommand: slices.Clone(a.OAuth2TokenCommand)}
	if a.OAuth2 != nil {
		o := *a.OAuth2
		o.Scopes = slices.Clone(o.Scopes)
		c.OAuth2 = &o
	}
	return c
}
