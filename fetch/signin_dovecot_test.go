package fetch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// End-to-end sign-in with OAuth2: the Poller, package fetch/oauth's token
// file and refresh, a real dovecot whose oauth2 passdb asks the fake
// identity provider (fetch/oauthtest) about every token. Nothing here
// stubs the token source (Poller.Token is nil), so the session's own
// path from the account's oauth2 block to the AUTH command is what runs.

// oauthRig is a dovecot with the oauth2 passdb and its identity provider.
type oauthRig struct {
	idp *oauthtest.Server
	srv *dovecottest.Server
}

func startOAuthRig(t *testing.T) *oauthRig {
	t.Helper()
	idp := oauthtest.Start()
	t.Cleanup(idp.Close)
	idp.AutoApprove = true
	srv := dovecottest.Start(t, dovecottest.Options{OAuth2IntrospectionURL: idp.IntrospectURL()})
	return &oauthRig{idp: idp, srv: srv}
}

// account is an OAuth2 account (no password at all) for dovecot user
// user, over implicit TLS, delivering into a fresh Maildir.
func (r *oauthRig) account(t *testing.T, name, user string, auth rcfile.AuthMethod) *rcfile.Account {
	t.Helper()
	dir := t.TempDir()
	return &rcfile.Account{
		Name: name, Server: "localhost", Port: r.srv.TLSPort, TLS: rcfile.TLSImplicit, CAFile: r.srv.CAFile,
		Username: user, Auth: auth, Timeout: 10 * time.Second,
		OAuth2: &rcfile.OAuth2{
			Provider: rcfile.ProviderGeneric, ClientID: r.idp.ClientID, Scopes: []string{"pop"}, Flow: rcfile.FlowDevice,
			TokenURL: r.idp.TokenURL(), DeviceURL: r.idp.DeviceURL(),
		},
		Deliver:  rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
		StateDir: filepath.Join(dir, "state"),
	}
}

// login signs a in at the provider as user (what `popfetch login` does).
func (r *oauthRig) login(t *testing.T, a *rcfile.Account, user string) {
	t.Helper()
	r.idp.User = user
	oauthLogin(t, a)
}

// logins counts dovecot's log lines about sign-ins of user with method
// (successful or not: both name user and method).
func (r *oauthRig) logins(t *testing.T, user, method string) int {
	t.Helper()
	return strings.Count(r.srv.Log(t), "user=<"+user+">, method="+method)
}

// refused counts the tokens of user that dovecot's oauth2 passdb refused.
func (r *oauthRig) refused(t *testing.T, user string) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(r.srv.Log(t), "\n") {
		if strings.Contains(l, "oauth2("+user+",") && strings.Contains(l, "oauth2 failed") {
			n++
		}
	}
	return n
}

func debugPoller(log io.Writer) *Poller {
	return &Poller{Log: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// TestDovecotOAuth2Mechanisms: an account with an oauth2 block and no
// password fetches from dovecot with auth = "auto" (OAUTHBEARER, which
// dovecot offers besides XOAUTH2), "xoauth2" and "oauthbearer", and with
// oauth2_token_command instead of the block; dovecot's log names the
// mechanism, and the provider was asked about the token.
func TestDovecotOAuth2Mechanisms(t *testing.T) {
	r := startOAuthRig(t)
	for _, tt := range []struct {
		name    string
		auth    rcfile.AuthMethod
		command bool
		want    string
	}{
		{"auto", rcfile.AuthAuto, false, "OAUTHBEARER"},
		{"xoauth2", rcfile.AuthXOAUTH2, false, "XOAUTH2"},
		{"oauthbearer", rcfile.AuthOAUTHBEARER, false, "OAUTHBEARER"},
		{"command-auto", rcfile.AuthAuto, true, "OAUTHBEARER"},
		{"command-xoauth2", rcfile.AuthXOAUTH2, true, "XOAUTH2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			user := "o" + strings.ReplaceAll(tt.name, "-", "")
			mb := r.srv.AddUser(t, user, "not-used-"+user)
			mb.Put(t, sample(1), sample(2))
			a := r.account(t, "acct-"+tt.name, user, tt.auth)
			if tt.command {
				// The helper's token: one a separate client got; popfetch
				// only runs the command.
				helper := r.account(t, "helper", user, rcfile.AuthAuto)
				r.login(t, helper, user)
				src, err := oauth.New(helper, oauth.Options{})
				if err != nil {
					t.Fatal(err)
				}
				tok, err := src.Token(context.Background(), false)
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				a.OAuth2, a.OAuth2TokenCommand = nil, []string{"/bin/cat", file}
			} else {
				r.login(t, a, user)
			}
			before := r.idp.Count("introspect")
			var log testutil.SyncBuffer
			res := debugPoller(&log).Poll(context.Background(), a)
			if res.Err != nil || res.Delivered != 2 || authMaildirCount(t, a) != 2 || mb.Count(t) != 0 {
				t.Fatalf("Poll: %v, delivered %d; server holds %d\n%s\n%s", res.Err, res.Delivered, mb.Count(t), log.String(), r.srv.Log(t))
			}
			if !strings.Contains(log.String(), "mechanism="+tt.want) {
				t.Errorf("the session log does not say mechanism=%s:\n%s", tt.want, log.String())
			}
			if !pop3test.Eventually(func() bool { return r.logins(t, user, tt.want) > 0 }) {
				t.Errorf("dovecot's log has no login of %s with method=%s:\n%s", user, tt.want, r.srv.Log(t))
			}
			if r.idp.Count("introspect") == before {
				t.Error("dovecot never asked the provider about the token")
			}
		})
	}
}

// TestDovecotOAuth2Lifecycle runs one account through the token lifecycle
// across polls, against dovecot: an access token that comes near its
// expiry between polls is refreshed before the login; one the server
// rejects although it has not expired (revoked at the provider's side
// only) gets exactly one refresh and one retry; a rotated refresh token
// is saved, as the next refresh (by a new session, reading the file)
// proves: the provider revokes the whole grant when an old one comes back;
// a revoked grant is an authentication hold that says what to run and
// leaves the mail on the server; after a new sign-in the mail is fetched.
func TestDovecotOAuth2Lifecycle(t *testing.T) {
	r := startOAuthRig(t)
	r.idp.Rotate = true
	// Valid for 2s before package oauth's refresh-ahead window.
	r.idp.AccessTTL = oauth.RefreshAhead + 2*time.Second
	mb := r.srv.AddUser(t, "life", "not-used")
	a := r.account(t, "life", "life", rcfile.AuthAuto)
	r.login(t, a, "life")
	ctx := context.Background()
	var log testutil.SyncBuffer
	p := debugPoller(&log)
	poll := func(step string, seq int, wantErr error) Result {
		t.Helper()
		mb.Put(t, sample(seq))
		res := p.Poll(ctx, a)
		if wantErr != nil {
			if !errors.Is(res.Err, wantErr) {
				t.Fatalf("%s: Poll = %v; want %v\n%s\n%s", step, res.Err, wantErr, log.String(), r.srv.Log(t))
			}
			return res
		}
		if res.Err != nil || res.Delivered != 1 || mb.Count(t) != 0 {
			t.Fatalf("%s: Poll: %v, delivered %d, server holds %d\n%s\n%s", step, res.Err, res.Delivered, mb.Count(t), log.String(), r.srv.Log(t))
		}
		return res
	}

	poll("first", 1, nil)
	if n := r.idp.Count("refresh"); n != 0 {
		t.Fatalf("first poll: %d refreshes; want none", n)
	}

	// Expiry between polls: the second poll refreshes ahead of it.
	time.Sleep(2500 * time.Millisecond)
	poll("near expiry", 2, nil)
	if n := r.idp.Count("refresh"); n != 1 {
		t.Fatalf("near expiry: %d refreshes; want 1", n)
	}

	// The provider no longer accepts the access token, but it has not
	// expired for popfetch: dovecot rejects it, the session asks for a
	// fresh one (one refresh, with the rotated refresh token from the
	// file) and retries once.
	r.idp.AccessTTL = time.Hour
	r.idp.ExpireAccess()
	refused, logins := r.refused(t, "life"), r.logins(t, "life", "OAUTHBEARER")
	poll("rejected by the server", 3, nil)
	if n := r.idp.Count("refresh"); n != 2 {
		t.Fatalf("rejected token: %d refreshes in all; want 2", n)
	}
	// The retry runs on the same connection: one refusal, then the
	// login.
	if !pop3test.Eventually(func() bool { return r.logins(t, "life", "OAUTHBEARER") == logins+1 }) ||
		r.refused(t, "life") != refused+1 {
		t.Errorf("dovecot refused %d tokens and logged %d logins in the rejected poll; want 1 and 1:\n%s",
			r.refused(t, "life")-refused, r.logins(t, "life", "OAUTHBEARER")-logins, r.srv.Log(t))
	}
	if n := r.idp.Count("reuse"); n != 0 {
		t.Fatalf("a rotated-away refresh token was presented %d times: the rotation was not saved", n)
	}

	// The rotated refresh token on disk is the live one: another refresh
	// from a new session works.
	r.idp.ExpireAccess()
	poll("after rotation", 4, nil)
	if n, reuse := r.idp.Count("refresh"), r.idp.Count("reuse"); n != 3 || reuse != 0 {
		t.Fatalf("after rotation: %d refreshes, %d reuses; want 3, 0", n, reuse)
	}

	// Revoked (a password change, an admin): a hold that names the
	// command, and the message stays on the server.
	r.idp.RevokeAll()
	res := poll("revoked", 5, ErrAuth)
	if !strings.Contains(res.Err.Error(), "run `popfetch login life`") {
		t.Errorf("hold does not say what to run: %v", res.Err)
	}
	if s := Summarize(res); !s.AuthFailed || !s.LoginRequired {
		t.Errorf("Summarize(revoked) = %+v; want AuthFailed and LoginRequired", s)
	}
	if n := mb.Count(t); n != 1 {
		t.Fatalf("after the hold the server holds %d messages; want 1 (nothing fetched, nothing deleted)", n)
	}
	if n := authMaildirCount(t, a); n != 4 {
		t.Fatalf("Maildir holds %d messages; want 4", n)
	}

	// Signed in again: the held message is fetched.
	r.login(t, a, "life")
	res = p.Poll(ctx, a)
	if res.Err != nil || res.Delivered != 1 || mb.Count(t) != 0 || authMaildirCount(t, a) != 5 {
		t.Fatalf("after login: %v, delivered %d, server holds %d", res.Err, res.Delivered, mb.Count(t))
	}
}

// TestDovecotOAuth2RejectedTwice: a token that dovecot keeps rejecting
// (the provider says it belongs to another user, so dovecot's oauth2
// passdb refuses it) gets exactly one refresh and one retry, then the
// account is held; the mail stays on the server.
func TestDovecotOAuth2RejectedTwice(t *testing.T) {
	r := startOAuthRig(t)
	mb := r.srv.AddUser(t, "bob", "not-used")
	mb.Put(t, sample(1))
	a := r.account(t, "bob", "bob", rcfile.AuthXOAUTH2)
	r.login(t, a, "mallory") // tokens for someone else
	var log testutil.SyncBuffer
	res := debugPoller(&log).Poll(context.Background(), a)
	if !errors.Is(res.Err, ErrAuth) {
		t.Fatalf("Poll = %v; want ErrAuth (hold)\n%s\n%s", res.Err, log.String(), r.srv.Log(t))
	}
	if s := Summarize(res); s.LoginRequired {
		t.Errorf("Summarize = %+v; a token the server refuses is not a lost grant (no popfetch login to suggest)", s)
	}
	if n := r.idp.Count("refresh"); n != 1 {
		t.Errorf("%d refreshes; want exactly 1", n)
	}
	if !pop3test.Eventually(func() bool { return r.logins(t, "bob", "XOAUTH2") > 0 }) {
		t.Errorf("dovecot's log does not show the connection end:\n%s", r.srv.Log(t))
	}
	if n := r.refused(t, "bob"); n != 2 || !strings.Contains(r.srv.Log(t), "auth failed, 2 attempts") {
		t.Errorf("dovecot refused %d tokens of bob; want 2 (one retry) on one connection:\n%s", n, r.srv.Log(t))
	}
	if n := mb.Count(t); n != 1 || authMaildirCount(t, a) != 0 {
		t.Errorf("server holds %d, Maildir %d; want 1, 0", n, authMaildirCount(t, a))
	}
}
