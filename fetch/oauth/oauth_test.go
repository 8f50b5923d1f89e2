package oauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/rcfile"
)

// account returns an account signed in through idp with flow.
func account(t *testing.T, idp *oauthtest.Server, flow string) *rcfile.Account {
	t.Helper()
	return &rcfile.Account{
		Name:     "acct",
		StateDir: t.TempDir(),
		OAuth2:   idp.Registration(flow),
	}
}

// lines is an io.Writer that hands each complete line to a channel and
// keeps everything written.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	ch   chan string
	part string
}

func newLines() *lines { return &lines{ch: make(chan string, 100)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.part += string(p)
	for {
		i := strings.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		select {
		case l.ch <- l.part[:i]:
		default:
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// await returns the first submatch of re in the lines written, waiting.
func (l *lines) await(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-l.ch:
			if m := re.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		case <-timeout:
			t.Fatalf("no line matching %s in:\n%s", re, l.String())
		}
	}
}

var (
	codeRE = regexp.MustCompile(`enter the code (\S+)`)
	urlRE  = regexp.MustCompile(`^\s+(http\S+/authorize\S+)$`)
)

// startLogin runs src.Login in the background, reading the user's
// answers from in (nil for none), and returns its output and its result.
func startLogin(src *Source, in io.Reader) (*lines, <-chan error) {
	out := newLines()
	errc := make(chan error, 1)
	go func() { errc <- src.Login(context.Background(), LoginIO{Out: out, In: in}) }()
	return out, errc
}

// deviceLogin signs a in with the device flow, approving the code as the
// user would.
func deviceLogin(t *testing.T, idp *oauthtest.Server, src *Source) string {
	t.Helper()
	out, errc := startLogin(src, nil)
	code := out.await(t, codeRE)
	if !idp.Approve(code) {
		t.Fatalf("Approve(%q) = false", code)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Login = %v; output:\n%s", err, out)
	}
	return out.String()
}

// startIdP starts a fake OAuth2 provider for one test.
func startIdP(t *testing.T) *oauthtest.Server {
	t.Helper()
	idp := oauthtest.Start()
	t.Cleanup(idp.Close)
	return idp
}

func newSource(t *testing.T, a *rcfile.Account, o Options) *Source {
	t.Helper()
	s, err := New(a, o)
	if err != nil || s == nil {
		t.Fatalf("New = %v, %v", s, err)
	}
	return s
}

func mustToken(t *testing.T, idp *oauthtest.Server, s *Source, fresh bool) string {
	t.Helper()
	tok, err := s.Token(context.Background(), fresh)
	if err != nil {
		t.Fatalf("Token(fresh=%v) = %v", fresh, err)
	}
	if _, ok := idp.Active(tok); !ok {
		t.Fatalf("Token(fresh=%v) returned a token the provider does not accept", fresh)
	}
	return tok
}

func TestDeviceLogin(t *testing.T) {
	idp := startIdP(t)
	a := account(t, idp, rcfile.FlowDevice)
	src := newSource(t, a, Options{})
	out := deviceLogin(t, idp, src)
	if !strings.Contains(out, idp.URL+"/devicelogin") {
		t.Errorf("Login output does not show the verification URL:\n%s", out)
	}
	fi, err := os.Stat(src.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %04o; want 0600", fi.Mode().Perm())
	}
	mustToken(t, idp, src, false)
	if n := idp.Count("refresh"); n != 0 {
		t.Errorf("a fresh login refreshed %d times; want 0", n)
	}
}

func TestDeviceLoginDenied(t *testing.T) {
	idp := startIdP(t)
	src := newSource(t, account(t, idp, rcfile.FlowDevice), Options{})
	out, errc := startLogin(src, nil)
	idp.Deny(out.await(t, codeRE))
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("Login after the user refused = %v; want access_denied", err)
	}
	if _, err := os.Stat(src.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused login left a token file: %v", err)
	}
}

func TestDeviceLoginTimesOut(t *testing.T) {
	idp := startIdP(t)
	src := newSource(t, account(t, idp, rcfile.FlowDevice), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err := src.Login(ctx, LoginIO{Out: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "not completed in time") {
		t.Fatalf("Login never approved = %v; want a clean timeout", err)
	}
}

// browserLogin signs in with the browser flow; the "browser" follows the
// provider's redirect to the loopback listener.
func browserLogin(t *testing.T, idp *oauthtest.Server, src *Source) {
	t.Helper()
	out, errc := startLogin(src, nil)
	u := out.await(t, urlRE)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "signed in") {
		t.Errorf("browser got %s: %s", resp.Status, body)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Login = %v; output:\n%s", err, out)
	}
}

func TestBrowserLogin(t *testing.T) {
	idp := startIdP(t)
	idp.ClientSecret = "client-s3cret"
	a := account(t, idp, rcfile.FlowBrowser)
	src := newSource(t, a, Options{})
	browserLogin(t, idp, src)
	mustToken(t, idp, src, false)
	if n := idp.Count("authorization_code"); n != 1 {
		t.Errorf("authorization code exchanges = %d; want 1", n)
	}
}

// TestBrowserLoginPaste: on a headless server the user opens the URL on
// another machine, whose browser cannot reach the loopback redirect, and
// pastes the address it was sent to.
func TestBrowserLoginPaste(t *testing.T) {
	idp := startIdP(t)
	src := newSource(t, account(t, idp, rcfile.FlowBrowser), Options{})
	pr, pw := io.Pipe()
	out, errc := startLogin(src, pr)
	u := out.await(t, urlRE)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatalf("authorize answered %s without a redirect", resp.Status)
	}
	io.WriteString(pw, "not a url\n")
	io.WriteString(pw, loc+"\n")
	if err := <-errc; err != nil {
		t.Fatalf("Login = %v; output:\n%s", err, out)
	}
	mustToken(t, idp, src, false)
}

func TestBrowserLoginForgedState(t *testing.T) {
	idp := startIdP(t)
	src := newSource(t, account(t, idp, rcfile.FlowBrowser), Options{})
	pr, pw := io.Pipe()
	out, errc := startLogin(src, pr)
	out.await(t, urlRE)
	io.WriteString(pw, "http://127.0.0.1:1/?code=stolen&state=other\n")
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "state does not match") {
		t.Fatalf("Login with a forged redirect = %v; want a state mismatch", err)
	}
}

func TestExpiredAccessTokenRefreshed(t *testing.T) {
	idp := startIdP(t)
	a := account(t, idp, rcfile.FlowDevice)
	now := time.Now()
	clock := func() time.Time { return now }
	src := newSource(t, a, Options{Now: clock})
	deviceLogin(t, idp, src)
	first := mustToken(t, idp, src, false)
	if again := mustToken(t, idp, src, false); again != first {
		t.Errorf("a valid token was replaced before its time")
	}
	// Within RefreshAhead of the expiry: refreshed ahead of time.
	now = now.Add(time.Hour - RefreshAhead + 30*time.Second)
	second := mustToken(t, idp, src, false)
	if second == first || idp.Count("refresh") != 1 {
		t.Errorf("token near expiry not refreshed (refreshes = %d)", idp.Count("refresh"))
	}
	// The server rejected a token the file says is valid (revoked
	// early, clock skew): fresh=true refreshes once.
	idp.ExpireAccess()
	third := mustToken(t, idp, src, true)
	if third == second || idp.Count("refresh") != 2 {
		t.Errorf("fresh=true did not refresh (refreshes = %d)", idp.Count("refresh"))
	}
}

func TestRotatedRefreshTokenSaved(t *testing.T) {
	idp := startIdP(t)
	idp.Rotate = true
	a := account(t, idp, rcfile.FlowDevice)
	src := newSource(t, a, Options{})
	deviceLogin(t, idp, src)
	before, _, err := readTokens(src.Path())
	if err != nil {
		t.Fatal(err)
	}
	idp.ExpireAccess()
	mustToken(t, idp, src, true)
	after, _, err := readTokens(src.Path())
	if err != nil {
		t.Fatal(err)
	}
	if after.RefreshToken == before.RefreshToken || after.RefreshToken == "" {
		t.Fatal("the rotated refresh token was not saved")
	}
	if after.RefreshUsed.IsZero() {
		t.Error("refresh_used not recorded")
	}
	// A new process (a new Source) goes on with the saved token.
	idp.ExpireAccess()
	mustToken(t, idp, newSource(t, a, Options{}), true)
	if n := idp.Count("reuse"); n != 0 {
		t.Errorf("a rotated-away refresh token was presented %d times", n)
	}
}

func TestRevokedHoldsAndKeepsTokens(t *testing.T) {
	idp := startIdP(t)
	a := account(t, idp, rcfile.FlowDevice)
	src := newSource(t, a, Options{})
	deviceLogin(t, idp, src)
	before, err := os.ReadFile(src.Path())
	if err != nil {
		t.Fatal(err)
	}
	idp.RevokeAll()
	_, err = src.Token(context.Background(), true)
	if !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("Token after revocation = %v; want ErrLoginRequired", err)
	}
	if !strings.Contains(err.Error(), "run `popfetch login acct`") || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("error does not say what to run: %v", err)
	}
	after, _ := os.ReadFile(src.Path())
	if !bytes.Equal(before, after) {
		t.Error("a failed refresh changed the token file")
	}
	// Signing in again clears it.
	deviceLogin(t, idp, src)
	mustToken(t, idp, src, false)
}

func TestNoTokensYetNeedsLogin(t *testing.T) {
	idp := startIdP(t)
	src := newSource(t, account(t, idp, rcfile.FlowBrowser), Options{})
	_, err := src.Token(context.Background(), false)
	if !errors.Is(err, ErrLoginRequired) || !strings.Contains(err.Error(), "popfetch login acct") {
		t.Fatalf("Token before any login = %v; want ErrLoginRequired naming the command", err)
	}
}

func TestProviderDownIsTemporary(t *testing.T) {
	idp := oauthtest.Start()
	a := account(t, idp, rcfile.FlowDevice)
	src := newSource(t, a, Options{})
	deviceLogin(t, idp, src)
	before, _ := os.ReadFile(src.Path())
	idp.SetDown(true)
	_, err := src.Token(context.Background(), true)
	if err == nil || errors.Is(err, ErrLoginRequired) {
		t.Fatalf("Token with the provider answering 503 = %v; want a temporary error", err)
	}
	idp.Close() // connection refused
	_, err = src.Token(context.Background(), true)
	if err == nil || errors.Is(err, ErrLoginRequired) {
		t.Fatalf("Token with the provider unreachable = %v; want a temporary error", err)
	}
	after, _ := os.ReadFile(src.Path())
	if !bytes.Equal(before, after) {
		t.Error("a failed refresh changed the token file")
	}
}

// TestConcurrentRefresh: two processes' Sources (separate file handles)
// and several callers refresh an expired token at once from a provider
// that rotates refresh tokens and revokes the grant when an old one is
// reused: only one refresh may happen, and everybody gets a valid token.
func TestConcurrentRefresh(t *testing.T) {
	idp := startIdP(t)
	idp.Rotate = true
	a := account(t, idp, rcfile.FlowDevice)
	deviceLogin(t, idp, newSource(t, a, Options{}))
	idp.ExpireAccess()
	srcs := []*Source{newSource(t, a, Options{}), newSource(t, a, Options{})}
	// Each has handed out the expired token, which the server rejected.
	for _, s := range srcs {
		if _, err := s.Token(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	toks := make(chan string, 8)
	for i := range 8 {
		wg.Go(func() {
			tok, err := srcs[i%2].Token(context.Background(), true)
			if err != nil {
				errs <- err
				return
			}
			toks <- tok
		})
	}
	wg.Wait()
	close(errs)
	close(toks)
	for err := range errs {
		t.Errorf("Token = %v", err)
	}
	for tok := range toks {
		if _, ok := idp.Active(tok); !ok {
			t.Error("a caller got a token the provider does not accept")
		}
	}
	if n := idp.Count("reuse"); n != 0 {
		t.Errorf("a rotated-away refresh token was presented %d times (the grant is revoked)", n)
	}
	// Usually one refresh; a caller that starts only after another of its
	// Source has already refreshed cannot tell its rejected token from
	// the new one and refreshes again, which costs a request, not a token.
	n := idp.Count("refresh")
	t.Logf("refreshes: %d", n)
	if n < 1 || n > 8 {
		t.Errorf("refreshes = %d; want 1 to 8", n)
	}
	idp.ExpireAccess()
	mustToken(t, idp, newSource(t, a, Options{}), true)
}

func TestTokenFileReadableRefused(t *testing.T) {
	idp := startIdP(t)
	a := account(t, idp, rcfile.FlowDevice)
	src := newSource(t, a, Options{})
	deviceLogin(t, idp, src)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		if err := os.Chmod(src.Path(), mode); err != nil {
			t.Fatal(err)
		}
		_, err := src.Token(context.Background(), false)
		if !errors.Is(err, ErrInsecureTokenFile) {
			t.Errorf("Token with the file at %04o = %v; want ErrInsecureTokenFile", mode, err)
		}
	}
}

func TestClientCredentials(t *testing.T) {
	idp := startIdP(t)
	idp.ClientSecret = "app-s3cret"
	a := account(t, idp, rcfile.FlowClientCredentials)
	src := newSource(t, a, Options{})
	if err := src.Login(context.Background(), LoginIO{Out: io.Discard}); !errors.Is(err, ErrNoLoginNeeded) {
		t.Errorf("Login with client_credentials = %v; want ErrNoLoginNeeded", err)
	}
	tok := mustToken(t, idp, src, false)
	if again := mustToken(t, idp, src, false); again != tok || idp.Count("client_credentials") != 1 {
		t.Errorf("a valid app token was not reused (requests = %d)", idp.Count("client_credentials"))
	}
	idp.ExpireAccess()
	if again := mustToken(t, idp, src, true); again == tok {
		t.Error("fresh=true returned the rejected app token")
	}
	a.OAuth2.ClientSecret = "wrong"
	_, err := newSource(t, a, Options{}).Token(context.Background(), true)
	if !errors.Is(err, ErrLoginRequired) || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("Token with a wrong client secret = %v; want a hold naming invalid_client", err)
	}
}

func TestTokenCommand(t *testing.T) {
	a := &rcfile.Account{Name: "acct", OAuth2TokenCommand: []string{"/bin/echo", "tok-from-helper"}}
	src := newSource(t, a, Options{})
	for _, fresh := range []bool{false, true} {
		tok, err := src.Token(context.Background(), fresh)
		if err != nil || tok != "tok-from-helper" {
			t.Errorf("Token(%v) = %q, %v", fresh, tok, err)
		}
	}
	if err := src.Login(context.Background(), LoginIO{Out: io.Discard}); err == nil {
		t.Error("Login with oauth2_token_command succeeded; the helper signs in, not popfetch")
	}
}

// TestSecretsNeverShown runs every path, the failures too, with debug
// logging, and looks for every token, code and the client secret in the
// log, the login output and the errors.
func TestSecretsNeverShown(t *testing.T) {
	idp := startIdP(t)
	idp.Rotate = true
	idp.ClientSecret = "client-s3cret-value"
	var logBuf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logBuf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug - 8}))
	var shown strings.Builder
	a := account(t, idp, rcfile.FlowDevice)
	src := newSource(t, a, Options{Log: log})
	shown.WriteString(deviceLogin(t, idp, src))
	b := account(t, idp, rcfile.FlowBrowser)
	bsrc := newSource(t, b, Options{Log: log})
	browserLogin(t, idp, bsrc)
	idp.ExpireAccess()
	mustToken(t, idp, src, true)
	mustToken(t, idp, bsrc, true)
	idp.SetDown(true)
	_, err := src.Token(context.Background(), true)
	shown.WriteString(errString(err))
	idp.SetDown(false)
	idp.RevokeAll()
	_, err = src.Token(context.Background(), true)
	shown.WriteString(errString(err))
	os.Chmod(src.Path(), 0o644)
	_, err = src.Token(context.Background(), false)
	shown.WriteString(errString(err))
	shown.WriteString(a.OAuth2.String())
	shown.WriteString(logBuf.String())
	all := shown.String()
	for _, s := range idp.Secrets() {
		if strings.Contains(all, s) {
			t.Errorf("secret %.6s... appears in logs, output or errors", s)
		}
	}
	if logBuf.Len() == 0 {
		t.Error("nothing was logged; the check proves nothing")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error() + "\n"
}

// TestTwoProcessesRefresh: two popfetch processes whose access token was
// rejected refresh at once, against a provider that rotates refresh
// tokens, answers slowly (so the two overlap) and revokes the grant when
// a rotated-away refresh token comes back: one refreshes, the other waits
// for the lock and takes the new token from the file; both end with a
// token the provider accepts, and the saved refresh token still works.
func TestTwoProcessesRefresh(t *testing.T) {
	idp := startIdP(t)
	idp.Rotate = true
	a := account(t, idp, rcfile.FlowDevice)
	deviceLogin(t, idp, newSource(t, a, Options{}))
	idp.ExpireAccess()
	idp.SetTokenDelay(500 * time.Millisecond)
	env := "POPFETCH_OAUTH_CHILD=" + strings.Join([]string{a.StateDir, idp.TokenURL(), idp.DeviceURL(), idp.ClientID}, "\n")
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRefreshChild$", "-test.v")
		cmd.Env = append(os.Environ(), env)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	tokRE := regexp.MustCompile(`(?m)^child token: (\S+)$`)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
		m := tokRE.FindStringSubmatch(outs[i].String())
		if m == nil {
			t.Fatalf("child %d printed no token:\n%s", i, outs[i])
		}
		if _, ok := idp.Active(m[1]); !ok {
			t.Errorf("child %d ended with a token the provider does not accept", i)
		}
	}
	if n := idp.Count("reuse"); n != 0 {
		t.Errorf("a rotated-away refresh token was presented %d times (the grant is revoked)", n)
	}
	if n := idp.Count("refresh"); n != 1 {
		t.Errorf("refreshes = %d; want 1 (the second process takes the first one's token)", n)
	}
	idp.SetTokenDelay(0)
	idp.ExpireAccess()
	mustToken(t, idp, newSource(t, a, Options{}), true)
}

// TestRefreshChild is TestTwoProcessesRefresh's child process: it takes
// the token on file, which the server rejected, and asks for a fresh one.
func TestRefreshChild(t *testing.T) {
	env := os.Getenv("POPFETCH_OAUTH_CHILD")
	if env == "" {
		t.Skip("child of TestTwoProcessesRefresh only")
	}
	f := strings.Split(env, "\n")
	a := &rcfile.Account{Name: "acct", StateDir: f[0], OAuth2: &rcfile.OAuth2{
		Provider: rcfile.ProviderGeneric, ClientID: f[3], Scopes: []string{"pop"}, Flow: rcfile.FlowDevice,
		TokenURL: f[1], DeviceURL: f[2],
	}}
	src := newSource(t, a, Options{})
	ctx := context.Background()
	if _, err := src.Token(ctx, false); err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("child token: %s\n", tok)
}
