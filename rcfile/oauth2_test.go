package rcfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/internal/testutil"
)

// oauthMinimal is an account with OAuth2 and no password; %s is the
// oauth2 block's body.
const oauthMinimal = `
account "a" {
  server   = "outlook.office365.com"
  username = "joe@contoso.com"
  oauth2 {
    %s
  }
  deliver { maildir = "/var/mail/joe" }
}
`

func TestOAuth2Values(t *testing.T) {
	fixedEnv(t)
	tests := []struct {
		body string
		want string // fmt of the OAuth2's effective settings
	}{
		{`provider = "microsoft"` + "\n" + `client_id = "c"`,
			"microsoft device common [https://outlook.office.com/POP.AccessAsUser.All offline_access] https://login.microsoftonline.com/common/oauth2/v2.0/authorize https://login.microsoftonline.com/common/oauth2/v2.0/token https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"},
		{`provider = "Microsoft"` + "\n" + `client_id = "c"` + "\n" + `tenant = "contoso.onmicrosoft.com"` + "\n" + `flow = "client_credentials"` + "\n" + `client_secret_file = "/s"`,
			"microsoft client_credentials contoso.onmicrosoft.com [https://outlook.office365.com/.default] https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode"},
		{`provider = "google"` + "\n" + `client_id = "c"`,
			"google browser  [https://mail.google.com/] https://accounts.google.com/o/oauth2/v2/auth https://oauth2.googleapis.com/token https://oauth2.googleapis.com/device/code"},
		{`provider = "generic"` + "\n" + `client_id = "c"` + "\n" + `scopes = ["pop"]` + "\n" + `token_url = "http://127.0.0.1:8080/t"` + "\n" + `device_url = "http://[::1]/d"`,
			"generic device  [pop]  http://127.0.0.1:8080/t http://[::1]/d"},
		{`provider = "generic"` + "\n" + `client_id = "c"` + "\n" + `scopes = ["pop"]` + "\n" + `token_url = "https://idp/t"` + "\n" + `auth_url = "http://localhost:9/a"`,
			"generic browser  [pop] http://localhost:9/a https://idp/t "},
	}
	for _, tt := range tests {
		cfg, diags := parseOne(t, fmt.Sprintf(oauthMinimal, tt.body))
		if diags.HasErrors() {
			t.Errorf("Parse(%s): %s", tt.body, render(t, diags))
			continue
		}
		o := cfg.Accounts[0].OAuth2
		got := fmt.Sprint(o.Provider, " ", o.Flow, " ", o.Tenant, " ", o.Scopes, " ", o.AuthURL, " ", o.TokenURL, " ", o.DeviceURL)
		if got != tt.want {
			t.Errorf("Parse(%s) =\n %s\nwant\n %s", tt.body, got, tt.want)
		}
		if pw := cfg.Accounts[0].Password; pw.String() != "no password" {
			t.Errorf("Parse(%s): a password appeared: %v", tt.body, cfg.Accounts[0].Password)
		}
	}
}

// TestOAuth2Inherit: the oauth2 block, oauth2_token_command and the
// password sources are inherited from defaults as one group: an account
// that sets any of them inherits none.
func TestOAuth2Inherit(t *testing.T) {
	fixedEnv(t)
	src := `
defaults {
  server   = "outlook.office365.com"
  oauth2 {
    provider  = "microsoft"
    client_id = "c"
  }
  deliver { maildir = "/var/mail/joe" }
}
account "a" {
  username = "a@contoso.com"
}
account "b" {
  username             = "b@contoso.com"
  oauth2_token_command = ["/bin/echo", "tok"]
}
account "c" {
  username     = "c@contoso.com"
  password_env = "PW"
}
`
	cfg, diags := parseOne(t, src)
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	a, b, c := cfg.Accounts[0], cfg.Accounts[1], cfg.Accounts[2]
	if a.OAuth2 == nil || a.OAuth2.ClientID != "c" {
		t.Errorf("a did not inherit the oauth2 block: %v", a.OAuth2)
	}
	if b.OAuth2 != nil || len(b.OAuth2TokenCommand) != 2 {
		t.Errorf("b: oauth2 %v, command %v; want the command only", b.OAuth2, b.OAuth2TokenCommand)
	}
	if c.OAuth2 != nil || c.Password.Env != "PW" {
		t.Errorf("c: oauth2 %v, password %v; want the password only", c.OAuth2, c.Password)
	}
}

// TestOAuth2Secrets: an inline client_secret makes a readable rc file an
// error, a readable client_secret_file is an error at load and at use,
// and no rendering shows the secret.
func TestOAuth2Secrets(t *testing.T) {
	fixedEnv(t)
	dir := t.TempDir()
	const secret = "cl1ent-s3cret-value"
	inline := fmt.Sprintf(oauthMinimal, `provider = "microsoft"`+"\n"+`client_id = "c"`+"\n"+`client_secret = "`+secret+`"`)
	for _, mode := range []os.FileMode{0o644, 0o640} {
		p := testutil.WriteFile(t, dir, "rc.hcl", inline, mode)
		cfg, diags := Load(p)
		out := string(render(t, diags))
		if cfg != nil || !strings.Contains(out, "chmod 600") {
			t.Errorf("rc %04o with client_secret: Load =\n%s\nwant a chmod error", mode, out)
		}
		if strings.Contains(out, secret) {
			t.Errorf("diagnostics show the client secret:\n%s", out)
		}
	}
	cfg, diags := Load(testutil.WriteFile(t, dir, "rc.hcl", inline, 0o600))
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	var b strings.Builder
	cfg.Format(&b)
	o := cfg.Accounts[0].OAuth2
	for _, s := range []string{b.String(), o.String(), fmt.Sprintf("%v %+v %#v", o, o, o)} {
		if strings.Contains(s, secret) {
			t.Errorf("the client secret is shown: %s", s)
		}
	}
	if got, err := o.Secret(); got != secret || err != nil {
		t.Errorf("Secret() = %q, %v", got, err)
	}

	sf := testutil.WriteFile(t, dir, "secret", secret+"\n", 0o644)
	withFile := fmt.Sprintf(oauthMinimal, `provider = "microsoft"`+"\n"+`client_id = "c"`+"\n"+`client_secret_file = "`+sf+`"`)
	cfg, diags = Load(testutil.WriteFile(t, dir, "rc2.hcl", withFile, 0o600))
	if out := string(render(t, diags)); cfg != nil || !strings.Contains(out, "chmod 600 "+sf) || !strings.Contains(out, "Readable client_secret_file") {
		t.Errorf("readable client_secret_file: Load =\n%s", render(t, diags))
	}
	cfg, _ = Parse([]byte(withFile), "x.hcl")
	if _, err := cfg.Accounts[0].OAuth2.Secret(); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("Secret() of a readable file = %v; want ErrInsecureFile", err)
	}
	os.Chmod(sf, 0o600)
	if got, err := cfg.Accounts[0].OAuth2.Secret(); got != secret || err != nil {
		t.Errorf("Secret() = %q, %v", got, err)
	}
}

func TestRunTokenCommand(t *testing.T) {
	ctx := context.Background()
	if tok, err := RunTokenCommand(ctx, []string{"/bin/echo", "at-123"}); tok != "at-123" || err != nil {
		t.Errorf("RunTokenCommand(echo) = %q, %v", tok, err)
	}
	long := strings.Repeat("x", 9000) // longer than any password, as JWTs are
	if tok, err := RunTokenCommand(ctx, []string{"/bin/echo", long}); tok != long || err != nil {
		t.Errorf("RunTokenCommand(9000 bytes) = %d bytes, %v", len(tok), err)
	}
	if _, err := RunTokenCommand(ctx, []string{"/bin/true"}); err == nil {
		t.Error("RunTokenCommand(true) printed nothing but succeeded")
	}
	_, err := RunTokenCommand(ctx, []string{"/bin/sh", "-c", "echo at-secret-xyz; exit 3"})
	if err == nil || strings.Contains(err.Error(), "at-secret-xyz") {
		t.Errorf("failing helper: %v; want an error without its stdout", err)
	}
}

func TestOAuth2OfflineAccessWarning(t *testing.T) {
	fixedEnv(t)
	body := `provider = "microsoft"` + "\n" + `client_id = "c"` + "\n" + `scopes = ["https://outlook.office.com/POP.AccessAsUser.All"]`
	_, diags := parseOne(t, fmt.Sprintf(oauthMinimal, body))
	if out := string(render(t, diags)); diags.HasErrors() || !strings.Contains(out, "warning: No offline_access scope") {
		t.Errorf("scopes without offline_access:\n%s", out)
	}
}
