package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// Sign-in through the built binary against a real dovecot whose oauth2
// passdb asks the fake identity provider (fetch/oauthtest) about tokens:
// `popfetch login`, the daemon's authentication hold and its lifting,
// and `popfetch check --connect`.

// oauthAccountRC is an account block that signs in at idp with the device
// flow, with auth (or none) and the extra lines.
func oauthAccountRC(idp *oauthtest.Server, name string, port int, user, auth, maildir string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "account %q {\n  server   = \"127.0.0.1\"\n  port     = %d\n  tls      = \"none\"\n  username = %q\n", name, port, user)
	if auth != "" {
		fmt.Fprintf(&b, "  auth     = %q\n", auth)
	}
	for _, l := range extra {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, `  oauth2 {
    provider      = "generic"
    client_id     = %q
    client_secret = %q
    scopes        = ["pop"]
    flow          = "device"
    token_url     = %q
    device_url    = %q
  }
  deliver { maildir = %q }
}
`, idp.ClientID, idp.ClientSecret, idp.TokenURL(), idp.DeviceURL(), maildir)
	return b.String()
}

func startIDP(t *testing.T) *oauthtest.Server {
	t.Helper()
	idp := oauthtest.Start()
	t.Cleanup(idp.Close)
	idp.AutoApprove = true
	idp.ClientSecret = "client-S3CRET-for-tests"
	return idp
}

// login runs `popfetch login name` (the provider approves at once).
func loginCLI(t *testing.T, rc, name string) {
	t.Helper()
	r := daemonCLI(t, rc, "login", name)
	if r.code != exitOK || !strings.Contains(r.stdout, name+": signed in") {
		t.Fatalf("popfetch login %s = %d\n%s%s", name, r.code, r.stdout, r.stderr)
	}
}

// TestDaemonOAuth2Hold: the daemon fetches with the token `popfetch
// login` saved; when the grant is revoked it holds the account, `popfetch
// status` says to run `popfetch login ACCOUNT`, and the new mail stays on
// the server; after `popfetch login` the hold lifts on `popfetch now` and,
// the second time, on SIGHUP, and the mail is fetched.
func TestDaemonOAuth2Hold(t *testing.T) {
	idp := startIDP(t)
	srv := dovecottest.Start(t, dovecottest.Options{OAuth2IntrospectionURL: idp.IntrospectURL()})
	mb := srv.AddUser(t, "alice", "not-the-token")
	mb.Put(t, seqMsg("oauth", 1, 2))
	dir := t.TempDir()
	rc, maildir := filepath.Join(dir, "rc.hcl"), filepath.Join(dir, "Maildir")
	writeFile(t, rc, fmt.Sprintf("state_dir = %q\n", filepath.Join(dir, "state"))+
		oauthAccountRC(idp, "work", srv.PlainPort, "alice", "", maildir, `interval = "30s"`))
	loginCLI(t, rc, "work")

	d := startDaemon(t, rc)
	waitMaildir(t, maildir, 1, 10*time.Second)

	for round, lift := range []string{"now", "SIGHUP"} {
		seq := round + 2
		idp.RevokeAll()
		mb.Put(t, seqMsg("oauth", seq, 2))
		r := daemonCLI(t, rc, "now", "work")
		if r.code != exitAuth {
			t.Fatalf("round %d: popfetch now work (revoked) = %d; want %d\n%s%s", round, r.code, exitAuth, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "popfetch login work") {
			t.Errorf("round %d: popfetch now does not say to run popfetch login:\n%s", round, r.stdout)
		}
		rows, out := statusRows(t, rc)
		if rows["work"]["STATE"] != "auth-hold" {
			t.Fatalf("round %d: status of work: want auth-hold:\n%s", round, out)
		}
		if !strings.Contains(rows["work"]["NEXT POLL"], "`popfetch login work`") {
			t.Errorf("round %d: status NEXT POLL of work = %q; want it to say to run `popfetch login work`:\n%s", round, rows["work"]["NEXT POLL"], out)
		}
		if n := mb.Count(t); n != 1 {
			t.Fatalf("round %d: the server holds %d messages during the hold; want 1", round, n)
		}
		if n := maildirCount(t, maildir); n != seq-1 {
			t.Fatalf("round %d: Maildir holds %d; want %d", round, n, seq-1)
		}
		if l := d.log.lines("authentication failed; not retrying", "popfetch login work"); len(l) == 0 {
			t.Errorf("round %d: the daemon's log has no hold line naming popfetch login:\n%s", round, d.log.String())
		}

		loginCLI(t, rc, "work")
		if lift == "now" {
			if r := daemonCLI(t, rc, "now", "work"); r.code != exitOK || !strings.Contains(r.stdout, "work: 1 new") {
				t.Fatalf("popfetch now after login = %d; want 0 and the message\n%s%s", r.code, r.stdout, r.stderr)
			}
		} else {
			if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitMaildir(t, maildir, seq, 10*time.Second)
			// The copy lands before its DELE and QUIT: wait for those too.
			waitFor(t, 10*time.Second, "the server to be empty", func() bool { return mb.Count(t) == 0 })
		}
		if n := mb.Count(t); n != 0 || maildirCount(t, maildir) != seq {
			t.Fatalf("after %s: server %d, Maildir %d; want 0, %d", lift, n, maildirCount(t, maildir), seq)
		}
		if rows, out := statusRows(t, rc); rows["work"]["STATE"] != "idle" {
			t.Errorf("after login and %s: status of work: want idle:\n%s", lift, out)
		}
	}
	checkComplete(t, maildir, 3)
}

// TestCheckConnectSignIn: `popfetch check --connect` signs in the way a
// poll does, with SCRAM-SHA-256 and with OAuth2 (the saved token, through
// dovecot's oauth2 passdb), names the mechanism, and fetches nothing; a
// revoked grant is exit status 3 with the command to run.
func TestCheckConnectSignIn(t *testing.T) {
	idp := startIDP(t)
	srv := dovecottest.Start(t, dovecottest.Options{OAuth2IntrospectionURL: idp.IntrospectURL()})
	pw := srv.AddUser(t, "scram", "scram-Pa55")
	pw.Put(t, seqMsg("scram", 1, 1))
	ob := srv.AddUser(t, "alice", "not-the-token")
	ob.Put(t, seqMsg("oauth", 1, 1), seqMsg("oauth", 2, 1))
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{name: "pw", port: srv.PlainPort, user: "scram", pass: pw.Pass,
		maildir: filepath.Join(dir, "M1"), extra: []string{`auth = "scram-sha-256"`}})+
		oauthAccountRC(idp, "work", srv.PlainPort, "alice", "auto", filepath.Join(dir, "M2")))
	loginCLI(t, rc, "work")

	r := daemonCLI(t, rc, "check", "--connect")
	if r.code != exitOK {
		t.Fatalf("check --connect = %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"pw: logged in with SCRAM-SHA-256; 1 messages on the server, 1 new",
		"work: logged in with OAUTHBEARER; 2 messages on the server, 2 new",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check --connect output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !pop3test.Eventually(func() bool {
		l := srv.Log(t)
		return strings.Contains(l, "user=<scram>, method=SCRAM-SHA-256") && strings.Contains(l, "user=<alice>, method=OAUTHBEARER")
	}) {
		t.Errorf("dovecot's log lacks the two logins:\n%s", srv.Log(t))
	}
	if pw.Count(t) != 1 || ob.Count(t) != 2 || maildirCount(t, filepath.Join(dir, "M2")) != 0 {
		t.Errorf("check --connect fetched or deleted mail")
	}

	idp.RevokeAll()
	r = daemonCLI(t, rc, "check", "--connect", "work")
	if r.code != exitAuth || !strings.Contains(r.stdout, "run `popfetch login work`") {
		t.Errorf("check --connect with a revoked grant = %d; want %d and the command to run\n%s%s", r.code, exitAuth, r.stdout, r.stderr)
	}
}

// TestWriteStatusLoginRequired: a hold for a lost OAuth2 grant says to
// run `popfetch login ACCOUNT` in the next-poll column, which the error
// column's cut does not reach; another hold keeps the general advice.
func TestWriteStatusLoginRequired(t *testing.T) {
	t.Parallel()
	long := "account work: XOAUTH2: access token: authentication failed: account work: oauth2 sign-in required: " +
		"the identity provider refused the refresh token (invalid_grant: revoked); run `popfetch login work` to sign in again"
	var b strings.Builder
	writeStatus(&b, daemon.Status{Accounts: []daemon.AccountStatus{
		{Name: "work", State: daemon.StateAuthHold, Last: &fetch.PollSummary{Err: long, AuthFailed: true, LoginRequired: true}},
		{Name: "pw", State: daemon.StateAuthHold, Last: &fetch.PollSummary{Err: "account pw: authentication failed", AuthFailed: true}},
	}})
	out := b.String()
	if !strings.Contains(out, "held: run `popfetch login work`, then SIGHUP or `popfetch now`") {
		t.Errorf("status lacks the login command for work:\n%s", out)
	}
	if strings.Contains(out, "popfetch login pw") || !strings.Contains(out, "held: fix the account, then SIGHUP or `popfetch now`") {
		t.Errorf("status of pw: want the general advice:\n%s", out)
	}
}
