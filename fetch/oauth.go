package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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
	src, err := oauth.New(a, oauth.Options{Log: log})
	if err != nil || src == nil {
		return nil, err
	}
	return func(ctx context.Context, fresh bool) (string, error) {
		tok, err := src.Token(ctx, fresh)
		if errors.Is(err, oauth.ErrLoginRequired) {
			return "", fmt.Errorf("%w: %w", ErrAuth, err)
		}
		return tok, err
	}, nil
}
