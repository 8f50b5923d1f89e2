package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/oauth"
	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/rcfile"
)

// loginRC writes an rc file whose account "work" signs in at idp with
// flow, its client secret inline (the file is 0600).
func loginRC(t *testing.T, idp *oauthtest.Server, flow string) (rc, state string) {
	t.Helper()
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	rc = filepath.Join(dir, "popfetch.hcl")
	writeFile(t, rc, fmt.Sprintf(`
state_dir = %q
account "work" {
  server   = "127.0.0.1"
  port     = 1
  tls      = "none"
  username = "alice"
  oauth2 {
    provider      = "generic"
    client_id     = %q
    client_secret = %q
    scopes        = ["pop"]
    flow          = %q
    auth_url      = %q
    token_url     = %q
    device_url    = %q
  }
  deliver { maildir = %q }
}
account "pw" {
  server        = "127.0.0.1"
  username      = "bob"
  password_env  = "NOPE"
  deliver { maildir = %q }
}
`, state, idp.ClientID, idp.ClientSecret, flow, idp.AuthURL(), idp.TokenURL(), idp.DeviceURL(), filepath.Join(dir, "Maildir"), filepath.Join(dir, "Maildir")))
	return rc, state
}

// syncLines is a goroutine-safe stdout that the test can watch.
type syncLines struct {
	lockedBuffer
}

func (l *syncLines) await(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	// A safety net: the sign-in prints its prompt at once, but on a
	// loaded machine under -race that took more than 10 s.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(l.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s in the output:\n%s", re, l.String())
	return ""
}

func runLogin(t *testing.T, out *syncLines, args ...string) <-chan int {
	return runLoginErr(t, out, &lockedBuffer{}, args...)
}

func runLoginErr(t *testing.T, out *syncLines, errb *lockedBuffer, args ...string) <-chan int {
	t.Helper()
	done := make(chan int, 1)
	go func() {
		code := run(context.Background(), args, out, errb)
		if code != exitOK {
			t.Logf("stderr: %s", errb.String())
		}
		done <- code
	}()
	return done
}

// checkToken says whether the account's saved token is one idp accepts.
func checkToken(t *testing.T, idp *oauthtest.Server, rc string) {
	t.Helper()
	cfg, diags := rcfile.Load(rc)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tf, err := fetch.OAuth2Token(cfg.Accounts[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tf(context.Background(), false)
	if err != nil {
		t.Fatalf("token after login: %v", err)
	}
	if _, ok := idp.Active(tok); !ok {
		t.Fatal("the saved token is not accepted by the provider")
	}
}

func TestLoginDevice(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.ClientSecret = "cli-s3cret-value"
	rc, state := loginRC(t, idp, "device")
	out := &syncLines{}
	var errb lockedBuffer
	done := runLoginErr(t, out, &errb, "-v", "--log-format", "json", "-f", rc, "login", "work")
	code := out.await(t, regexp.MustCompile(`enter the code (\S+)`))
	idp.Approve(code)
	if c := <-done; c != exitOK {
		t.Fatalf("login = %d\n%s", c, out.String())
	}
	if !strings.Contains(out.String(), "work: signed in") {
		t.Errorf("output:\n%s", out.String())
	}
	fi, err := os.Stat(oauth.TokenPath(state, "work"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	checkToken(t, idp, rc)

	// Nothing secret in what login printed or logged at -v, nor in
	// check's output, nor in the status table.
	c, checkOut, checkErr := runCLI(t, "-v", "--log-format", "json", "-f", rc, "check")
	if c != exitOK {
		t.Fatalf("check = %d\n%s%s", c, checkOut, checkErr)
	}
	cfg, _ := rcfile.Load(rc)
	var st strings.Builder
	writeOAuth2Status(&st, cfg)
	all := out.String() + errb.String() + checkOut + checkErr + st.String()
	for _, s := range idp.Secrets() {
		if strings.Contains(all, s) {
			t.Errorf("secret %.8s... shown by login or check", s)
		}
	}
}

func TestLoginBrowser(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.ClientSecret = "cli-s3cret-value"
	rc, _ := loginRC(t, idp, "browser")
	out := &syncLines{}
	old := loginStdin
	loginStdin = strings.NewReader("") // no paste: the redirect comes
	defer func() { loginStdin = old }()
	done := runLogin(t, out, "login", "-f", rc, "work")
	u := out.await(t, regexp.MustCompile(`(?m)^\s+(http\S+/authorize\S+)$`))
	resp, err := http.Get(u) // the browser, following the redirect to 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if c := <-done; c != exitOK {
		t.Fatalf("login = %d\n%s", c, out.String())
	}
	checkToken(t, idp, rc)
}

func TestLoginWrongAccounts(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.ClientSecret = "cli-s3cret-value"
	rc, _ := loginRC(t, idp, "client_credentials")
	if c, out, errs := runCLI(t, "-f", rc, "login", "work"); c != exitOK || !strings.Contains(out, "no sign-in needed") {
		t.Errorf("login client_credentials = %d\n%s%s", c, out, errs)
	}
	if c, _, errs := runCLI(t, "-f", rc, "login", "pw"); c != exitUsage || !strings.Contains(errs, "no oauth2 block") {
		t.Errorf("login of a password account = %d\n%s", c, errs)
	}
	if c, _, _ := runCLI(t, "-f", rc, "login"); c != exitUsage {
		t.Errorf("login without an account = %d; want %d", c, exitUsage)
	}
	if c, _, _ := runCLI(t, "-f", rc, "login", "work", "pw"); c != exitUsage {
		t.Errorf("login of two accounts = %d; want %d", c, exitUsage)
	}
}

// TestOAuth2Status: `popfetch status` shows per OAuth2 account when the
// access token expires and when the refresh token was last used, says
// what to run before the first sign-in, and never shows a token.
func TestOAuth2Status(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.ClientSecret = "cli-s3cret-value"
	idp.AutoApprove = true
	rc, _ := loginRC(t, idp, "device")
	cfg, diags := rcfile.Load(rc)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var b strings.Builder
	writeOAuth2Status(&b, cfg)
	if !strings.Contains(b.String(), "not signed in: run `popfetch login work`") || strings.Contains(b.String(), "\npw ") {
		t.Errorf("before login:\n%s", b.String())
	}
	if c, out, errs := runCLI(t, "-f", rc, "login", "work"); c != exitOK {
		t.Fatalf("login = %d\n%s%s", c, out, errs)
	}
	idp.ExpireAccess()
	tf, err := fetch.OAuth2Token(cfg.Accounts[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tf(context.Background(), true); err != nil { // a refresh
		t.Fatal(err)
	}
	b.Reset()
	writeOAuth2Status(&b, cfg)
	out := b.String()
	today := time.Now().Format("2006-01-02")
	// The access token may expire tomorrow (a test run just before
	// midnight); its last use is today.
	if !regexp.MustCompile(`(?m)^work\s+device\s+\d{4}-\d\d-\d\d \S+\s+` + today + ` `).MatchString(out) {
		t.Errorf("after login and refresh, no expiry and last use:\n%s", out)
	}
	for _, s := range idp.Secrets() {
		if strings.Contains(out, s) {
			t.Errorf("status shows secret %.8s...", s)
		}
	}
}

// TestOAuth2StatusRefreshExpiry: a provider that limits the refresh
// token's life (refresh_token_expires_in) has its end shown by status.
func TestOAuth2StatusRefreshExpiry(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.ClientSecret = "cli-s3cret-value"
	idp.AutoApprove = true
	idp.RefreshTTL = 7 * 24 * time.Hour
	rc, _ := loginRC(t, idp, "device")
	cfg, diags := rcfile.Load(rc)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if c, out, errs := runCLI(t, "-f", rc, "login", "work"); c != exitOK {
		t.Fatalf("login = %d\n%s%s", c, out, errs)
	}
	var b strings.Builder
	writeOAuth2Status(&b, cfg)
	in7 := time.Now().Add(7 * 24 * time.Hour).Format("2006-01-02")
	in7b := time.Now().Add(7*24*time.Hour - time.Minute).Format("2006-01-02") // a run at midnight
	if !strings.Contains(b.String(), "(expires "+in7) && !strings.Contains(b.String(), "(expires "+in7b) {
		t.Errorf("no refresh token expiry in:\n%s", b.String())
	}
}
