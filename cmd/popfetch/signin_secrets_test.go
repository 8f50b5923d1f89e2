package main

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestSignInNoSecretInOutput runs every mechanism through the built
// binary, once accepted and once refused: `popfetch fetch` and `popfetch
// check --connect`, each at -v with text and with JSON logs. No secret may
// appear in stdout, stderr, or any file of the state directory but the
// token file: not the password, the client secret, an access or refresh
// token or device code the provider issued, the APOP digest, nor any line
// the client sent after AUTH (the base64 SASL responses, SCRAM's proof
// among them). The accepted OAuth2 runs start with an access token the
// server rejects, so a refresh and a retry are in the logs too; the
// refused ones end in the hold. (fetch's TestAuthNoSecretInLogs does the
// same for the Poller with a stub token source.)
func TestSignInNoSecretInOutput(t *testing.T) {
	const pass, cmdToken = "Pa55-w0rd-SECRET-9q", "cmd-TOKEN-SECRET-7x"
	idp := startIDP(t)
	for _, tt := range []struct {
		name, auth string
		oauth2     bool // an oauth2 block (login first)
		command    bool // oauth2_token_command
	}{
		{"auto", "auto", false, false},
		{"user", "user", false, false},
		{"apop", "apop", false, false},
		{"plain", "plain", false, false},
		{"scram-sha-1", "scram-sha-1", false, false},
		{"scram-sha-256", "scram-sha-256", false, false},
		{"oauth2-auto", "auto", true, false},
		{"xoauth2", "xoauth2", true, false},
		{"oauthbearer", "oauthbearer", true, false},
		{"command-xoauth2", "xoauth2", false, true},
	} {
		for _, good := range []bool{true, false} {
			name := tt.name
			if !good {
				name += "/refused"
			}
			t.Run(name, func(t *testing.T) {
				opts := pop3test.Options{User: "joe", Pass: pass, APOP: true,
					Messages: []pop3test.Message{{UID: "u1", Data: seqMsg("s", 1, 1)}},
					Capa:     []string{"USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2 OAUTHBEARER"},
					ValidToken: func(tok string) bool {
						if !good {
							return false
						}
						if tok == cmdToken {
							return true
						}
						_, ok := idp.Active(tok)
						return ok
					}}
				if !good {
					opts.Pass = "another"
				}
				srv := pop3test.NewServer(t, opts)
				dir := t.TempDir()
				state := filepath.Join(dir, "state")
				rc := filepath.Join(dir, "rc.hcl")
				maildir := filepath.Join(dir, "Maildir")
				var acct string
				switch {
				case tt.oauth2:
					acct = oauthAccountRC(idp, "acct", srv.Port(), "joe", tt.auth, maildir)
				case tt.command:
					tokFile := filepath.Join(dir, "token")
					writeFile(t, tokFile, cmdToken+"\n")
					acct = rcText(state, nil, rcAccount{name: "acct", port: srv.Port(), user: "joe", pass: "unused", maildir: maildir,
						extra: []string{fmt.Sprintf("auth = %q", tt.auth), fmt.Sprintf("oauth2_token_command = [\"/bin/cat\", %q]", tokFile)}})
					acct = acct[strings.Index(acct, "account "):]
					// A token source and no password: the groups are one.
					acct = strings.Replace(acct, "  password = \"unused\"\n", "", 1)
				default:
					acct = rcText(state, nil, rcAccount{name: "acct", port: srv.Port(), user: "joe", pass: pass, maildir: maildir,
						extra: []string{fmt.Sprintf("auth = %q", tt.auth)}})
					acct = acct[strings.Index(acct, "account "):]
				}
				writeFile(t, rc, fmt.Sprintf("state_dir = %q\n", state)+acct)
				var all strings.Builder
				if tt.oauth2 {
					r := daemonCLI(t, rc, "-v", "login", "acct")
					if r.code != exitOK {
						t.Fatalf("login = %d\n%s%s", r.code, r.stdout, r.stderr)
					}
					all.WriteString(r.stdout + r.stderr)
					// The server will reject the saved access token:
					// a refresh and a retry.
					idp.ExpireAccess()
				}
				wantCode := exitOK
				if !good {
					wantCode = exitAuth
				}
				for _, args := range [][]string{
					{"-v", "check", "--connect"},
					{"-v", "--log-format", "json", "check", "--connect"},
					{"-v", "fetch"},
					{"-v", "--log-format", "json", "fetch"},
				} {
					r := daemonCLI(t, rc, args...)
					if r.code != wantCode {
						t.Errorf("popfetch %s = %d; want %d\n%s%s", strings.Join(args, " "), r.code, wantCode, r.stdout, r.stderr)
					}
					fmt.Fprintf(&all, "$ popfetch %s\n%s%s", strings.Join(args, " "), r.stdout, r.stderr)
				}
				if good && maildirCount(t, maildir) != 1 {
					t.Errorf("accepted: Maildir holds %d; want 1", maildirCount(t, maildir))
				}
				if !good && len(srv.Messages()) != 1 {
					t.Errorf("refused: the server holds %d messages; want 1", len(srv.Messages()))
				}
				if tt.oauth2 && good && idp.Count("refresh") == 0 {
					t.Errorf("no refresh happened: the rejected-token path did not run")
				}

				// Every file of the state directory but the token file.
				tokenFile := oauth.TokenPath(state, "acct")
				filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
					if err != nil || d.IsDir() || p == tokenFile || d.Type()&fs.ModeSocket != 0 {
						return nil
					}
					b, err := os.ReadFile(p)
					if err == nil {
						fmt.Fprintf(&all, "== %s\n%s\n", p, b)
					}
					return nil
				})

				secrets := append([]string{pass, "Pa55-w0rd", cmdToken, idp.ClientSecret,
					base64.StdEncoding.EncodeToString([]byte(pass)),
					base64.StdEncoding.EncodeToString([]byte(cmdToken))}, idp.Secrets()...)
				sum := md5.Sum([]byte("<1896.697170952@pop3test>" + pass))
				secrets = append(secrets, hex.EncodeToString(sum[:]))
				for _, s := range idp.Secrets() {
					secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(s)))
				}
				after := false
				for _, l := range srv.Commands() {
					verb, arg, _ := strings.Cut(l, " ")
					switch {
					case verb == "AUTH" || verb == "APOP" || verb == "PASS":
						after = verb == "AUTH"
						if f := strings.Fields(arg); len(f) > 1 && len(f[len(f)-1]) > 4 || verb == "PASS" && len(arg) > 4 {
							secrets = append(secrets, f[len(f)-1])
						}
					case after && len(l) > 4:
						secrets = append(secrets, l)
					default:
						after = false
					}
				}
				out := all.String()
				for _, s := range secrets {
					if s != "" && strings.Contains(out, s) {
						t.Errorf("secret %.10q... in the output or the state directory:\n%s", s, out)
					}
				}
			})
		}
	}
}
