package fetch

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// authAccount is an account on host:port without TLS (loopback) that
// delivers into a fresh Maildir.
func authAccount(t *testing.T, port int, user, pass string, auth rcfile.AuthMethod) *rcfile.Account {
	t.Helper()
	dir := t.TempDir()
	return &rcfile.Account{
		Name: "auth", Server: "127.0.0.1", Port: port, TLS: rcfile.TLSNone,
		Username: user, Password: rcfile.Password{Inline: pass}, Auth: auth,
		Timeout:  10 * time.Second,
		Deliver:  rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
		StateDir: filepath.Join(dir, "state"),
	}
}

func authMaildirCount(t *testing.T, a *rcfile.Account) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(a.Deliver.Maildir, "new"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return len(ents)
}

// TestDovecotAuthMechanisms: every password mechanism logs in to a real
// dovecot and fetches, over a plain loopback connection and over implicit
// TLS; auto picks SCRAM-SHA-256 there, as dovecot's own log confirms; a
// wrong password with SCRAM is an authentication hold and nothing else is
// tried.
func TestDovecotAuthMechanisms(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	for _, tt := range []struct {
		auth rcfile.AuthMethod
		tls  rcfile.TLSMode
		want string // dovecot's method= in its login line
	}{
		{rcfile.AuthAuto, rcfile.TLSNone, "SCRAM-SHA-256"},
		{rcfile.AuthAuto, rcfile.TLSImplicit, "SCRAM-SHA-256"},
		{rcfile.AuthUser, rcfile.TLSNone, "PLAIN"}, // dovecot logs USER/PASS as PLAIN
		{rcfile.AuthAPOP, rcfile.TLSNone, "APOP"},
		{rcfile.AuthPlain, rcfile.TLSNone, "PLAIN"},
		{rcfile.AuthPlain, rcfile.TLSImplicit, "PLAIN"},
		{rcfile.AuthSCRAMSHA1, rcfile.TLSNone, "SCRAM-SHA-1"},
		{rcfile.AuthSCRAMSHA256, rcfile.TLSImplicit, "SCRAM-SHA-256"},
	} {
		t.Run(string(tt.auth)+"/"+string(tt.tls), func(t *testing.T) {
			user := "u" + strings.ReplaceAll(string(tt.auth), "-", "") + string(tt.tls)
			mb := srv.AddUser(t, user, "pw-"+user)
			mb.Put(t, sample(1))
			a := authAccount(t, srv.PlainPort, mb.User, mb.Pass, tt.auth)
			if tt.tls == rcfile.TLSImplicit {
				a.Server, a.Port, a.TLS, a.CAFile = "localhost", srv.TLSPort, rcfile.TLSImplicit, srv.CAFile
			}
			var log testutil.SyncBuffer
			p := &Poller{Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			res := p.Poll(context.Background(), a)
			if res.Err != nil || res.Delivered != 1 || authMaildirCount(t, a) != 1 {
				t.Fatalf("Poll: %v, delivered %d\n%s", res.Err, res.Delivered, log.String())
			}
			mech := pop3.Mechanism(tt.auth)
			if tt.auth == rcfile.AuthAuto {
				mech = pop3.MechSCRAMSHA256
			}
			if !strings.Contains(log.String(), "mechanism="+mech.String()) {
				t.Errorf("the session log does not say mechanism=%s:\n%s", mech, log.String())
			}
			if !pop3test.Eventually(func() bool {
				return strings.Contains(srv.Log(t), "user=<"+user+">, method="+tt.want)
			}) {
				t.Errorf("dovecot's log has no login of %s with method=%s", user, tt.want)
			}
			if strings.Contains(log.String(), mb.Pass) {
				t.Errorf("the password is in the log:\n%s", log.String())
			}
		})
	}
	t.Run("wrong password, auto", func(t *testing.T) {
		mb := srv.AddUser(t, "wrongpw", "right")
		a := authAccount(t, srv.PlainPort, mb.User, "wrong", rcfile.AuthAuto)
		res := (&Poller{}).Poll(context.Background(), a)
		if !errors.Is(res.Err, ErrAuth) {
			t.Fatalf("Poll = %v; want ErrAuth", res.Err)
		}
		if !strings.Contains(res.Err.Error(), "SCRAM-SHA-256") {
			t.Errorf("error %q does not name the mechanism", res.Err)
		}
		time.Sleep(200 * time.Millisecond)
		if n := strings.Count(srv.Log(t), "user=<wrongpw>"); n > 1 {
			t.Errorf("dovecot saw %d login attempts of wrongpw; want one (no fallback):\n%s", n, srv.Log(t))
		}
	})
}

// TestAuthNoSecretInLogs runs every mechanism through a poll at debug level
// against pop3test, once accepted and once refused, with text and JSON
// logs, and looks for each secret in the logs and the errors: the
// password, the token, the APOP digest and every line the client sent
// after its AUTH or APOP command (base64 responses, the SCRAM proof among
// them).
func TestAuthNoSecretInLogs(t *testing.T) {
	const pass, token, fresh = "Pa55-w0rd-secret", "tok-SECRET-abc123", "tok-FRESH-def456"
	for _, auth := range rcfile.AuthMethods {
		for _, good := range []bool{true, false} {
			name := string(auth)
			if !good {
				name += "/refused"
			}
			t.Run(name, func(t *testing.T) {
				opts := pop3test.Options{User: "joe", Pass: pass, APOP: true, Messages: []pop3test.Message{{UID: "u1", Data: sample(1)}},
					Capa:       []string{"USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2 OAUTHBEARER"},
					ValidToken: func(tok string) bool { return good && tok == fresh }}
				if !good {
					opts.Pass = "another"
				}
				srv := pop3test.NewServer(t, opts)
				a := authAccount(t, srv.Port(), "joe", pass, auth)
				var tokens oauthStub
				p := &Poller{}
				if auth == rcfile.AuthXOAUTH2 || auth == rcfile.AuthOAUTHBEARER {
					tokens = oauthStub{stale: token, fresh: fresh}
					p.Token = func(*rcfile.Account) pop3.TokenFunc { return tokens.fn }
				}
				var text, js testutil.SyncBuffer
				for _, h := range []slog.Handler{
					slog.NewTextHandler(&text, &slog.HandlerOptions{Level: slog.LevelDebug}),
					slog.NewJSONHandler(&js, &slog.HandlerOptions{Level: slog.LevelDebug}),
				} {
					p.Log = slog.New(h)
					res := p.Poll(context.Background(), a)
					if good != (res.Err == nil) {
						t.Fatalf("Poll: %v\n%s", res.Err, srv.Transcript())
					}
					if res.Err != nil {
						text.Write([]byte(res.Err.Error()))
					}
				}
				secrets := []string{pass, token, fresh, base64.StdEncoding.EncodeToString([]byte(pass))}
				sum := md5.Sum([]byte("<1896.697170952@pop3test>" + pass))
				secrets = append(secrets, hex.EncodeToString(sum[:]))
				after := false
				for _, l := range srv.Commands() {
					verb, arg, _ := strings.Cut(l, " ")
					switch {
					case verb == "AUTH" || verb == "APOP" || verb == "PASS":
						after = verb == "AUTH"
						if f := strings.Fields(arg); len(f) > 1 && len(f[len(f)-1]) > 4 {
							secrets = append(secrets, f[len(f)-1])
						}
					case after && len(l) > 4:
						secrets = append(secrets, l)
					default:
						after = false
					}
				}
				out := text.String() + js.String()
				for _, s := range secrets {
					if strings.Contains(out, s) {
						t.Errorf("secret %q in the log or error:\n%s", s, out)
					}
				}
			})
		}
	}
}

// oauthStub hands out a stale token, then a fresh one.
type oauthStub struct{ stale, fresh string }

func (s *oauthStub) fn(ctx context.Context, fresh bool) (string, error) {
	if fresh {
		return s.fresh, nil
	}
	return s.stale, nil
}
