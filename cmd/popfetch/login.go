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

	"github.com/popfetch/popfetch/fetch/oauth"
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
	cfg, _, ok := g.load()
	if !ok {
		return exitConfig
	}
	accts, err := selectAccounts(cfg, fs.Args())
	if err != nil {
		fmt.Fprintf(g.stderr, "popfetch: %v\n", err)
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
	src, err := oauth.New(a, oauth.Options{Log: g.logger(slog.LevelWarn)})
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
		fmt.Fprintf(g.stderr, "popfetch login: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(g.stdout, "%s: signed in. A daemon holding this account resumes on SIGHUP or `popfetch now %s`.\n", a.Name, a.Name)
	return exitOK
}
