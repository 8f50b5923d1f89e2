package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/rcfile"
)

// loginStdin is where `popfetch login` reads a pasted redirect address;
// tests replace it.
var loginStdin io.Reader = os.Stdin

// login signs one account in with its oauth2 block's flow and saves the
// tokens in its state directory.
func (g *globals) login(ctx context.Context, args []string) int {
	fs := g.flags("login")
	listen := fs.String("listen", "", "loopback address of the browser flow's redirect listener")
	if !g.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(g.stderr, "popfetch login: name exactly one account\n\n%s", usage)
		return exitUsage
	}
	cfg, _, ok := g.loadOneShot()
	if !ok {
		return exitConfig
	}
	accts, ok := g.selectAccounts(cfg, fs.Args())
	if !ok {
		return exitUsage
	}
	a := accts[0]
	switch {
	case a.OAuth2TokenCommand != nil:
		fmt.Fprintf(g.stdout, "%s: oauth2_token_command gets the token; sign in with that helper, not with popfetch login.\n", a.Name)
		return exitOK
	case a.OAuth2 == nil:
		fmt.Fprintf(g.stderr, "popfetch login: account %s has no oauth2 block; it signs in with its password\n", a.Name)
		return exitUsage
	}
	// The account is named here, once, for log lines and errors alike.
	src, err := oauth.New(a, oauth.Options{Log: g.logger(slog.LevelWarn).With(slog.String("account", a.Name))})
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch login: %v\n", err)
		return exitFail
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = src.Login(ctx, oauth.LoginIO{Out: g.stdout, In: loginStdin, Listen: *listen})
	switch {
	case errors.Is(err, oauth.ErrNoLoginNeeded):
		fmt.Fprintf(g.stdout, "%s: %v; popfetch gets its tokens by itself.\n", a.Name, err)
		return exitOK
	case err != nil:
		fmt.Fprintf(g.stderr, "popfetch login: account %s: %v\n", a.Name, err)
		return exitFail
	}
	fmt.Fprintf(g.stdout, "%s: signed in. A daemon holding this account resumes on SIGHUP or `popfetch now %s`.\n", a.Name, a.Name)
	return exitOK
}

// writeOAuth2Status prints, for `popfetch status`, each OAuth2 account's
// token state from its token file: when the access token expires and when
// the refresh token last got a new one (providers expire an idle refresh
// token: Microsoft after 90 days), and when that one expires if the
// provider said so. Never a token.
func writeOAuth2Status(w io.Writer, cfg *rcfile.Config) {
	const layout = "2006-01-02 15:04:05"
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(layout)
	}
	var tw *tabwriter.Writer
	for _, a := range cfg.Accounts {
		if a.OAuth2 == nil {
			continue
		}
		if tw == nil {
			fmt.Fprintln(w)
			tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OAUTH2 ACCOUNT\tFLOW\tACCESS TOKEN EXPIRES\tREFRESH TOKEN LAST USED\tTOKEN FILE")
		}
		src, err := oauth.New(a, oauth.Options{})
		if err != nil {
			continue
		}
		info, err := src.Info()
		exp, used := at(info.Expiry), at(info.RefreshUsed)
		switch {
		case err != nil:
			exp, used = "unreadable: "+printable(err.Error(), 100), "-"
		case info.Expiry.IsZero() && a.OAuth2.Flow != rcfile.FlowClientCredentials:
			exp = "not signed in: run `popfetch login " + a.Name + "`"
		case !info.HasRefresh && a.OAuth2.Flow != rcfile.FlowClientCredentials:
			used = "none: run `popfetch login " + a.Name + "`"
		case !info.RefreshExpiry.IsZero():
			// The provider limits its life (Google: an app in testing
			// mode); the oauth2-expiring alert warns before it ends.
			used += " (expires " + at(info.RefreshExpiry) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(a.Name, 60), a.OAuth2.Flow, exp, used, printable(info.Path, 200))
	}
	if tw != nil {
		tw.Flush()
	}
}
