package fetch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/rcfile"
)

// TestAutoSCRAMWithHashedPassdb: a Dovecot that lists SCRAM in
// auth_mechanisms but stores the user's password as a crypt hash, from
// which SCRAM cannot be done. auth = "auto" must still log in wherever
// USER/PASS does (it falls back to PLAIN over the verified TLS, warns once,
// and later polls of the Poller skip SCRAM); an explicit auth =
// "scram-sha-256" fails with ErrAuth, as asked.
func TestAutoSCRAMWithHashedPassdb(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	srv.AddUser(t, "hashed", "secret")
	out, err := exec.Command("doveadm", "pw", "-s", "SHA512-CRYPT", "-p", "secret").Output()
	if err != nil {
		t.Skip("doveadm pw:", err)
	}
	hash := strings.TrimSpace(string(out))
	path := filepath.Join(srv.Dir, "users.d", "hashed")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("{PLAIN}secret")) {
		t.Fatalf("passwd-file line %q has no {PLAIN}secret", b)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte("{PLAIN}secret"), []byte(hash), 1), 0o640); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // dovecot re-stats a passwd-file once a second
	var logBuf bytes.Buffer
	p := &Poller{Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	account := func(m rcfile.AuthMethod) *rcfile.Account {
		dir := t.TempDir()
		return &rcfile.Account{
			Name: "hashed", Server: "localhost", Port: srv.TLSPort, TLS: rcfile.TLSImplicit, CAFile: srv.CAFile,
			Username: "hashed", Password: rcfile.Password{Inline: "secret"}, Auth: m, Timeout: 10 * time.Second, Keep: true,
			Deliver:  rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
			StateDir: filepath.Join(dir, "state"),
		}
	}
	for _, m := range []rcfile.AuthMethod{rcfile.AuthUser, rcfile.AuthAuto, rcfile.AuthAuto} {
		res := p.Poll(context.Background(), account(m))
		if res.Err != nil {
			t.Fatalf("auth=%s against a hashed passdb: %v", m, res.Err)
		}
		if m == rcfile.AuthAuto && res.Mechanism != "PLAIN" {
			t.Errorf("auth=auto logged in with %q; want PLAIN", res.Mechanism)
		}
	}
	if n := strings.Count(logBuf.String(), "fallback=PLAIN"); n != 1 {
		t.Errorf("%d fallback warnings in two polls; want 1:\n%s", n, logBuf.String())
	}
	if !strings.Contains(logBuf.String(), "level=WARN") || !strings.Contains(logBuf.String(), "mechanism=SCRAM-SHA-256") {
		t.Errorf("no WARN naming SCRAM-SHA-256:\n%s", logBuf.String())
	}
	if !p.noSCRAM(account(rcfile.AuthAuto)) {
		t.Error("the Poller did not remember the fallback")
	}
	res := p.Poll(context.Background(), account(rcfile.AuthSCRAMSHA256))
	if !errors.Is(res.Err, ErrAuth) {
		t.Errorf("explicit auth = scram-sha-256: err = %v; want ErrAuth (no fallback)", res.Err)
	}
}
