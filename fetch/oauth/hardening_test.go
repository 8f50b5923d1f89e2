package oauth

// Regression tests for attacks on the token lifecycle: redirects of the
// token endpoint, a provider echoing secrets, a failed save after a
// rotation, symlinks and foreign writers in the state directory.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/oauthtest"
	"github.com/popfetch/popfetch/rcfile"
)

// TestWriteFailureKeepsRotatedToken: the provider rotates the refresh
// token; saving the new one fails (disk full, read-only state dir; here a
// non-empty directory where the temporary file goes). Token still hands
// out the new access token, and logs that "the next run may need popfetch
// login". But the new refresh token is kept nowhere, not even in memory:
// the very next refresh of the same Source (same daemon process) presents
// the rotated-away refresh token from disk, which a provider with reuse
// detection answers by revoking the whole grant.
func TestWriteFailureKeepsRotatedToken(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.Rotate = true
	a := account(t, idp, rcfile.FlowDevice)
	now := time.Now()
	var logs bytes.Buffer
	src := newSource(t, a, Options{Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	deviceLogin(t, idp, src)

	block := fmt.Sprintf("%s.tmp%d", src.Path(), os.Getpid())
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour) // access token expired: refresh
	mustToken(t, idp, src, false)
	if !strings.Contains(logs.String(), "could not save") {
		t.Fatalf("write did not fail as set up; logs:\n%s", &logs)
	}
	os.RemoveAll(block) // the disk is fine again

	now = now.Add(2 * time.Hour) // next refresh, same process
	if _, err := src.Token(context.Background(), false); err != nil {
		t.Errorf("second refresh after a failed save: %v", err)
	}
	if n := idp.Count("reuse"); n != 0 {
		t.Errorf("the rotated-away refresh token was presented %d times (grant revoked by reuse detection)", n)
	}
}

// TestTokenEndpointRedirectRefused: the token endpoint is https, but
// answers 307 to an http URL. Go's http.Client follows a 307/308 with the
// POST body (refresh_token, client_secret) and, for a same-host redirect,
// the Authorization header, over plain http. The client popfetch builds
// (oauth.New without HTTPClient, as fetch.OAuth2Token and popfetch login
// use) has no CheckRedirect. Here the http target is on loopback because
// the test box has no other network; the client does not look at the
// scheme or host at all, so http://idp.example.com would get the same.
func TestTokenEndpointRedirectRefused(t *testing.T) {
	var mu sync.Mutex
	var got []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b)+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, "nope", 500)
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/token", http.StatusTemporaryRedirect)
	}))
	defer tlsSrv.Close()
	// Trust the test CA in the default transport, which the production
	// client uses; its redirect policy stays the production one.
	dt := http.DefaultTransport.(*http.Transport)
	old := dt.TLSClientConfig
	dt.TLSClientConfig = &tls.Config{RootCAs: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	defer func() { dt.TLSClientConfig = old }()

	dir := t.TempDir()
	a := &rcfile.Account{Name: "acct", StateDir: dir, OAuth2: &rcfile.OAuth2{
		Provider: rcfile.ProviderGeneric, ClientID: "cid", ClientSecret: "CLIENT-SECRET-XYZ",
		Flow: rcfile.FlowDevice, TokenURL: tlsSrv.URL + "/token", AuthURL: tlsSrv.URL + "/a", DeviceURL: tlsSrv.URL + "/d",
	}}
	if err := writeTokens(TokenPath(dir, "acct"), stored{AccessToken: "old", RefreshToken: "RT-SECRET-123", Expiry: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	src, _ := New(a, Options{})
	_, err := src.Token(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("Token = %v; want an error saying the endpoint redirected", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if strings.Contains(g, "RT-SECRET-123") || strings.Contains(g, "CLIENT-SECRET-XYZ") || strings.Contains(g, "Basic") {
			t.Errorf("secrets followed a redirect to plain http: %q", g)
		}
	}
}

// TestIdPErrorEchoRedacted: a token endpoint (buggy or hostile, or
// a proxy in front of it) whose error_description quotes the request:
// the refresh token and the client secret. classify and loginErr put up
// to 200 bytes of error_description into the error, which becomes the
// hold reason in logs, the journal and `popfetch status`.
func TestIdPErrorEchoRedacted(t *testing.T) {
	const rt, secret = "RT-abc123", "CS-s3cr3t"
	for _, tt := range []struct {
		status int
		code   string
	}{{400, "invalid_grant"}, {401, "invalid_client"}, {400, "invalid_request"}} {
		t.Run(tt.code, func(t *testing.T) {
			idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error":%q,"error_description":"bad request refresh_token=%s client_secret=%s"}`, tt.code, r.PostForm.Get("refresh_token"), r.PostForm.Get("client_secret"))
			}))
			defer idp.Close()
			dir := t.TempDir()
			a := &rcfile.Account{Name: "acct", StateDir: dir, OAuth2: &rcfile.OAuth2{
				Provider: rcfile.ProviderMicrosoft, ClientID: "cid", ClientSecret: secret,
				Flow: rcfile.FlowDevice, TokenURL: idp.URL + "/token", AuthURL: idp.URL + "/a", DeviceURL: idp.URL + "/d",
			}}
			if err := writeTokens(TokenPath(dir, "acct"), stored{AccessToken: "old", RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}); err != nil {
				t.Fatal(err)
			}
			src, _ := New(a, Options{})
			_, err := src.Token(context.Background(), false)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), rt) || strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes the IdP's echo of a secret: %v", err)
			}
		})
	}
}

// TestLockSymlinkRefused: the lock file is opened with O_CREATE and
// without O_NOFOLLOW or any trust check, before the token file's checks
// run (and when no token file exists yet, readTokens checks nothing). A
// symlink planted at oauth2-ACCOUNT.json.lock makes popfetch (root, for
// the system daemon) create an empty file wherever it points
// (/etc/nologin, say). Requires write access to the state directory,
// which nothing here refuses: see TestLoginRefusesWorldWritableStateDir.
func TestLockSymlinkRefused(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	a := account(t, idp, rcfile.FlowDevice)
	target := filepath.Join(t.TempDir(), "created-by-popfetch")
	if err := os.Symlink(target, TokenPath(a.StateDir, a.Name)+".lock"); err != nil {
		t.Fatal(err)
	}
	src := newSource(t, a, Options{})
	_, err := src.Token(context.Background(), false)
	t.Logf("Token: %v", err)
	if _, serr := os.Lstat(target); serr == nil {
		t.Errorf("the lock's symlink was followed: %s created", target)
	}
}

// TestLoginRefusesWorldWritableStateDir: popfetch login writes the
// refresh token into a state directory that any user can write (0777, no
// sticky bit) without a check: anyone can then rename the token file away,
// or plant the lock symlink above. (Token refuses the file afterwards,
// through trust.CheckInfo, so the damage is a sign-in that cannot be
// used, plus the lock symlink.)
func TestLoginRefusesWorldWritableStateDir(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	a := account(t, idp, rcfile.FlowDevice)
	if err := os.Chmod(a.StateDir, 0o777); err != nil {
		t.Fatal(err)
	}
	src := newSource(t, a, Options{})
	out := newLines()
	errc := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { errc <- src.Login(ctx, LoginIO{Out: out}) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "writable by every user") {
			t.Errorf("Login = %v; want a refusal of the state directory", err)
		}
		if _, serr := os.Lstat(src.Path()); serr == nil {
			t.Errorf("tokens saved in %s", src.Path())
		}
		return
	case <-time.After(2 * time.Second):
	}
	code := out.await(t, codeRE)
	idp.Approve(code)
	err := <-errc
	if err == nil {
		t.Errorf("Login saved tokens in a world-writable state directory %s", a.StateDir)
	}
	_, terr := src.Token(context.Background(), false)
	t.Logf("Token afterwards: %v", terr)
}

// TestBrowserListenLoopbackOnly: `popfetch login --listen` takes any
// address; 0.0.0.0 exposes the redirect listener (and puts
// http://[::]:port in the redirect URI) to the network. The state check
// still guards the code, so this is defence in depth.
func TestBrowserListenLoopbackOnly(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	a := account(t, idp, rcfile.FlowBrowser)
	src := newSource(t, a, Options{})
	out := newLines()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- src.Login(ctx, LoginIO{Out: out, Listen: "0.0.0.0:0"}) }()
	select {
	case err := <-errc:
		cancel()
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Login with --listen 0.0.0.0:0 = %v; want a refusal naming loopback", err)
		}
		return
	case <-time.After(time.Second):
	}
	cancel()
	<-errc
	// A listener on 0.0.0.0 prints as [::] (Go's wildcard listener).
	if o := out.String(); strings.Contains(o, "0.0.0.0") || strings.Contains(o, "[::]") {
		t.Errorf("browser flow listens on a non-loopback address:\n%s", out)
	}
}

// TestCorruptTokenFileAsksForLogin: a truncated or corrupt token file
// (a restore from backup, a manual edit) cannot mend itself: the account
// is held (ErrLoginRequired) with an error that says to run popfetch
// login, and quotes nothing of the file.
func TestCorruptTokenFileAsksForLogin(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	a := account(t, idp, rcfile.FlowDevice)
	if err := os.WriteFile(TokenPath(a.StateDir, a.Name), []byte(`{"access_token":"at-1","refresh_tok`), 0o600); err != nil {
		t.Fatal(err)
	}
	src := newSource(t, a, Options{})
	_, err := src.Token(context.Background(), false)
	if !errors.Is(err, ErrLoginRequired) || !strings.Contains(err.Error(), "popfetch login acct") || strings.Contains(err.Error(), "at-1") {
		t.Errorf("Token with a corrupt file = %v; want ErrLoginRequired naming popfetch login, quoting nothing", err)
	}
}

// TestAccountNamedByCaller: the session's logger and errors name the
// account already; the package's own errors and log lines do not repeat
// it (the hint to run popfetch login names it, as the command needs it).
func TestAccountNamedByCaller(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.Rotate = true
	a := account(t, idp, rcfile.FlowDevice)
	var logs bytes.Buffer
	now := time.Now()
	src := newSource(t, a, Options{Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, err := src.Token(context.Background(), false)
	if err == nil || strings.Contains(err.Error(), "account acct") {
		t.Errorf("Token before login = %v; want the account named once, in the command", err)
	}
	deviceLogin(t, idp, src)
	now = now.Add(2 * time.Hour)
	mustToken(t, idp, src, false)
	if logs.Len() == 0 || strings.Contains(logs.String(), "account=") {
		t.Errorf("log lines name the account (or none were written):\n%s", &logs)
	}
}

// TestStaleTempTokenFile: a process killed between writing its new tokens
// to the temporary file and renaming it leaves oauth2-ACCOUNT.json.tmpPID.
// With a rotating provider that file holds the only live refresh token:
// the next holder of the lock adopts it. A torn or older one is removed.
func TestStaleTempTokenFile(t *testing.T) {
	idp := oauthtest.Start()
	defer idp.Close()
	idp.Rotate = true
	a := account(t, idp, rcfile.FlowDevice)
	now := time.Now()
	src := newSource(t, a, Options{Now: func() time.Time { return now }})
	deviceLogin(t, idp, src)
	old, _, _ := readTokens(src.Path())
	// The killed process's refresh, as the provider saw it.
	resp, err := http.PostForm(idp.TokenURL(), map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {old.RefreshToken},
		"client_id": {idp.ClientID}, "client_secret": {idp.ClientSecret}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("simulated refresh: %v %v", resp, err)
	}
	var nt stored
	json.NewDecoder(resp.Body).Decode(&nt)
	resp.Body.Close()
	nt.Obtained = old.Obtained.Add(time.Minute)
	nt.Expiry = now.Add(time.Hour)
	b, _ := json.Marshal(nt)
	if err := os.WriteFile(src.Path()+".tmp999999", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src.Path()+".tmp999998", b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour) // expired: refresh under the lock
	mustToken(t, idp, src, false)
	if n := idp.Count("reuse"); n != 0 {
		t.Errorf("the rotated-away refresh token was presented %d times: the temporary file was not adopted", n)
	}
	for _, tmp := range []string{".tmp999999", ".tmp999998"} {
		if _, err := os.Lstat(src.Path() + tmp); err == nil {
			t.Errorf("%s left in place", tmp)
		}
	}
}

// TestIdPEchoEncoded: a token endpoint (or a proxy in front of it) that
// echoes the request as it received it quotes the secrets encoded: the
// form body is application/x-www-form-urlencoded, so a refresh token with
// "/" or "+" (Google's start "1//0g") arrives as "1%2F%2F0g...", and the
// client secret arrives base64'd in an Authorization header. Neither may
// reach the error.
func TestIdPEchoEncoded(t *testing.T) {
	const rt = "1//0gAbCdEfGhIjKlMnOpQrStUvWxYz0123456789-abcdefghijkl"
	const secret = "GOCSPX-Ab+Cd/Ef=GhIjKlMnOp"
	basic := base64.StdEncoding.EncodeToString([]byte("cid:" + url.QueryEscape(secret)))
	for _, tt := range []struct {
		name     string
		provider string
		echo     func(r *http.Request) string
	}{
		{"form body", rcfile.ProviderMicrosoft, func(r *http.Request) string { b, _ := io.ReadAll(r.Body); return string(b) }},
		{"path escaped", rcfile.ProviderMicrosoft, func(r *http.Request) string {
			r.ParseForm()
			return "/x/" + url.PathEscape(r.PostForm.Get("refresh_token")) + "/" + url.PathEscape(r.PostForm.Get("client_secret"))
		}},
		{"auth header", rcfile.ProviderGeneric, func(r *http.Request) string { return r.Header.Get("Authorization") }},
		{"auth header built", rcfile.ProviderGeneric, func(r *http.Request) string { return "Basic " + basic }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				e := tt.echo(r)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q}`, "bad request: "+e)
			}))
			defer idp.Close()
			dir := t.TempDir()
			a := &rcfile.Account{Name: "acct", StateDir: dir, OAuth2: &rcfile.OAuth2{
				Provider: tt.provider, ClientID: "cid", ClientSecret: secret,
				Flow: rcfile.FlowDevice, TokenURL: idp.URL + "/token", AuthURL: idp.URL + "/a", DeviceURL: idp.URL + "/d",
			}}
			if err := writeTokens(TokenPath(dir, "acct"), stored{AccessToken: "old", RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}); err != nil {
				t.Fatal(err)
			}
			src, err := New(a, Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(context.Background(), false)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, leak := range []string{"0gAbCdEfGhIjKlMn", "Ab%2BCd%2FEf", "GhIjKlMnOp", basic[4:24]} {
				if strings.Contains(msg, leak) {
					t.Errorf("error leaks an encoded secret (%q): %s", leak, msg)
				}
			}
		})
	}
}

// TestStickyStateDir: a state directory that other users can write is
// refused even with the sticky bit: there any local user can create the
// names popfetch uses (a lock file of their own blocks every refresh).
func TestStickyStateDir(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o700, true},
		{0o755, true},
		{0o777 | os.ModeSticky, false},
		{0o733 | os.ModeSticky, false},
		{0o770 | os.ModeSticky, false},
		{0o777, false},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.mode); err != nil {
				t.Fatal(err)
			}
			err := checkStateDir(dir)
			if (err == nil) != tt.ok {
				t.Fatalf("checkStateDir(%v) = %v; want ok=%v", tt.mode, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), dir) {
				t.Errorf("the refusal does not name the directory: %v", err)
			}
			// Token goes through the same check (or the token file's
			// own): no refresh in such a directory.
			idp := startIdP(t)
			a := account(t, idp, rcfile.FlowDevice)
			a.StateDir = dir
			src := newSource(t, a, Options{})
			if err := writeTokens(src.Path(), stored{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(-time.Hour)}); err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(context.Background(), true)
			if refused := err != nil && (strings.Contains(err.Error(), "state directory") || strings.Contains(err.Error(), "another user")); refused == tt.ok {
				t.Errorf("Token in a state directory of mode %v: %v", tt.mode, err)
			}
		})
	}
}

// TestRecoverTempSkipsUnremovable: a temporary token file that cannot be
// removed (another user's, or here a directory with content) does not
// stop recoverTemp before a later one that holds the only copy of a
// rotated refresh token.
func TestRecoverTempSkipsUnremovable(t *testing.T) {
	dir := t.TempDir()
	path := TokenPath(dir, "acct")
	if err := os.MkdirAll(filepath.Join(path+".tmp1", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	good := stored{AccessToken: "AT-new", RefreshToken: "RT-new", Expiry: time.Now().Add(time.Hour), Obtained: time.Now()}
	b, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp2", b, 0o600); err != nil {
		t.Fatal(err)
	}
	adopted, err := recoverTemp(path, time.Time{})
	if !adopted {
		t.Fatalf("recoverTemp stopped at the unremovable temporary file: adopted=false, err=%v", err)
	}
	if err == nil {
		t.Error("recoverTemp does not report the temporary file it could not remove")
	}
	got, ok, err := readTokens(path)
	if err != nil || !ok || got.RefreshToken != "RT-new" {
		t.Errorf("token file after recovery: %+v, %v, %v; want the adopted one", got, ok, err)
	}
}

// TestCorruptFileWithTemp: a corrupt token file with a complete temporary
// file beside it (a process killed while saving, a damaged file) is
// repaired by adopting the temporary file, not put on a sign-in hold; a
// corrupt file alone still asks for popfetch login.
func TestCorruptFileWithTemp(t *testing.T) {
	for _, tt := range []struct {
		name    string
		temp    bool
		wantErr error
	}{
		{"with temp", true, nil},
		{"alone", false, ErrLoginRequired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := startIdP(t)
			a := account(t, idp, rcfile.FlowDevice)
			a.StateDir = t.TempDir()
			src := newSource(t, a, Options{})
			if tt.temp {
				good := stored{AccessToken: "AT-good", TokenType: "Bearer", RefreshToken: "RT-good", Expiry: time.Now().Add(time.Hour), Obtained: time.Now()}
				b, err := json.Marshal(good)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(src.Path()+".tmp4242", b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(src.Path(), []byte(`{"access_tok`), 0o600); err != nil {
				t.Fatal(err)
			}
			tok, err := src.Token(context.Background(), false)
			if tt.wantErr == nil {
				if err != nil || tok != "AT-good" {
					t.Errorf("Token = %q, %v; want the temporary file's AT-good", tok, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Token = %q, %v; want %v", tok, err, tt.wantErr)
			}
		})
	}
}

// TestLoginEchoEncoded: loginErr masks the encoded secrets as classify
// does: a token endpoint that answers the device flow's poll by echoing
// the request quotes the client secret form-encoded (or base64'd in the
// Authorization header) and the device code.
func TestLoginEchoEncoded(t *testing.T) {
	const secret = "GOCSPX-Ab+Cd/Ef=GhIjKlMnOp"
	const device = "DC/0gAbCd+EfGhIjKlMnOp=="
	for _, provider := range []string{rcfile.ProviderMicrosoft, rcfile.ProviderGeneric} {
		t.Run(provider, func(t *testing.T) {
			var idp *httptest.Server
			idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if r.URL.Path == "/d" {
					fmt.Fprintf(w, `{"device_code":%q,"user_code":"ABCD","verification_uri":%q,"expires_in":60,"interval":1}`, device, idp.URL+"/verify")
					return
				}
				b, _ := io.ReadAll(r.Body)
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"error":"access_denied","error_description":%q}`, "denied: "+r.Header.Get("Authorization")+" "+string(b))
			}))
			defer idp.Close()
			a := &rcfile.Account{Name: "acct", StateDir: t.TempDir(), OAuth2: &rcfile.OAuth2{
				Provider: provider, ClientID: "cid", ClientSecret: secret,
				Flow: rcfile.FlowDevice, TokenURL: idp.URL + "/token", AuthURL: idp.URL + "/a", DeviceURL: idp.URL + "/d",
			}}
			src, err := New(a, Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = src.Login(context.Background(), LoginIO{Out: io.Discard})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, "denied") {
				t.Fatalf("the provider's text is not quoted, so nothing is tested: %s", msg)
			}
			basic := base64.StdEncoding.EncodeToString([]byte("cid:" + url.QueryEscape(secret)))
			for _, leak := range []string{"Ab%2BCd%2FEf", "GhIjKlMnOp", "0gAbCd%2BEf", basic[4:24]} {
				if strings.Contains(msg, leak) {
					t.Errorf("error leaks an encoded secret (%q): %s", leak, msg)
				}
			}
		})
	}
}
