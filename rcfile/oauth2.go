package rcfile

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// OAuth2 providers and flows.
const (
	ProviderMicrosoft = "microsoft"
	ProviderGoogle    = "google"
	ProviderGeneric   = "generic"

	FlowDevice            = "device"             // RFC 8628 device authorization grant
	FlowBrowser           = "browser"            // RFC 6749 §4.1 authorization code with RFC 7636 PKCE, loopback redirect (RFC 8252 §7.3)
	FlowClientCredentials = "client_credentials" // RFC 6749 §4.4: no user; Microsoft 365 app-only access
)

// Provider presets. The endpoints and scopes are the providers' own,
// as documented in "Microsoft identity platform and the OAuth 2.0 device
// authorization grant flow", "... authorization code flow", "... client
// credentials flow" and "Authenticate an IMAP, POP or SMTP connection
// using OAuth" (Microsoft Learn), and in Google's "OAuth 2.0 for Mobile &
// Desktop Apps" and "OAuth 2.0 for TV and Limited-Input Device
// Applications"; man/popfetch.hcl.5 names them for users. Google's device
// flow allows only a short list of scopes, which does not include mail,
// so Google defaults to the browser flow.
const (
	microsoftBase      = "https://login.microsoftonline.com/"
	MicrosoftScopeUser = "https://outlook.office.com/POP.AccessAsUser.All"
	MicrosoftScopeApp  = "https://outlook.office365.com/.default"
	googleAuthURL      = "https://accounts.google.com/o/oauth2/v2/auth"
	googleTokenURL     = "https://oauth2.googleapis.com/token"
	googleDeviceURL    = "https://oauth2.googleapis.com/device/code"
	GoogleScopeMail    = "https://mail.google.com/"
	maxOAuth2Value     = 2048
	defaultTenant      = "common"
	microsoftOffline   = "offline_access"
)

// OAuth2 is an account's OAuth2 client: what package fetch/oauth needs to
// sign in once (popfetch login) and to keep the access token fresh. Every
// default is applied: the endpoints of a provider preset, its scopes and
// its flow.
type OAuth2 struct {
	Provider         string
	ClientID         string
	ClientSecret     string // inline; never logged (see String)
	ClientSecretFile string // first line of the file; same rules as password_file
	Tenant           string // Microsoft only
	Scopes           []string
	Flow             string
	AuthURL          string // browser flow
	TokenURL         string
	DeviceURL        string // device flow

	Range hcl.Range // the oauth2 block, for diagnostics at run time
}

// Secret returns the client secret, "" for a public client (none
// configured). A client_secret_file follows password_file's rules: not
// readable by group or others (ErrInsecureFile), trusted (internal/trust).
func (o *OAuth2) Secret() (string, error) {
	var s string
	switch {
	case o.ClientSecretFile != "":
		v, err := readSecretFile(o.ClientSecretFile, "client_secret_file")
		if err != nil {
			return "", err
		}
		s = v
		if s == "" {
			return "", fmt.Errorf("client_secret_file %s: the secret is empty", o.ClientSecretFile)
		}
	default:
		s = o.ClientSecret
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", fmt.Errorf("client secret contains a control character")
	}
	return s, nil
}

// String describes the client with the secret masked; it is safe to log.
func (o *OAuth2) String() string {
	secret := "none"
	switch {
	case o.ClientSecretFile != "":
		secret = "file " + o.ClientSecretFile
	case o.ClientSecret != "":
		secret = "********"
	}
	return fmt.Sprintf("oauth2{provider=%s flow=%s client_id=%s secret=%s}", o.Provider, o.Flow, o.ClientID, secret)
}

// GoString keeps %#v from printing the inline secret.
func (o *OAuth2) GoString() string { return "rcfile." + o.String() }

// LogValue keeps slog from printing the inline secret.
func (o *OAuth2) LogValue() slog.Value { return slog.StringValue(o.String()) }

// TokenCommandTimeout bounds oauth2_token_command, as CommandTimeout does
// password_command.
const TokenCommandTimeout = CommandTimeout

// maxTokenRead bounds what is read from oauth2_token_command: Microsoft's
// access tokens are JWTs of a few kilobytes, longer than any password.
const maxTokenRead = 16 << 10

// RunTokenCommand runs oauth2_token_command as Resolve runs
// password_command (no shell, trusted program, empty stdin, bounded time
// and output) and returns the first line of its stdout: the access token.
// A CR before the LF is trimmed, as no token holds one (Resolve refuses
// it in a password instead). Errors never contain the token.
func RunTokenCommand(ctx context.Context, argv []string) (string, error) {
	s, err := runSecretCommand(ctx, argv, "oauth2_token_command", maxTokenRead)
	if err != nil {
		return "", err
	}
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("oauth2_token_command %s printed no token", argv[0])
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return "", fmt.Errorf("oauth2_token_command %s: the token contains a control character", argv[0])
	}
	return s, nil
}

// oauth2 validates an oauth2 block and applies the provider's presets.
func (p *parser) oauth2(o *oauth2HCL) *OAuth2 {
	out := &OAuth2{Range: o.DefRange}
	if o.Provider == nil {
		p.errorf(o.DefRange, "Missing provider",
			`The oauth2 block needs provider = "microsoft", "google" or "generic".`)
		return nil
	}
	switch v := strings.ToLower(*o.Provider); v {
	case ProviderMicrosoft, ProviderGoogle, ProviderGeneric:
		out.Provider = v
	default:
		p.errorf(o.ProviderRange, "Invalid provider",
			`provider must be "microsoft", "google" or "generic", not %q.`, *o.Provider)
		return nil
	}
	if v, ok := p.required(o.ClientID, o.ClientIDRange, o.DefRange, "client_id", `client_id = "00001111-aaaa-2222-bbbb-3333cccc4444"`); ok {
		p.oauth2Value(v, o.ClientIDRange, "client_id")
		out.ClientID = v
	}
	if o.ClientSecret != nil && o.ClientSecretFile != nil {
		p.errorf(o.ClientSecretFileRange, "Two client secrets",
			"Both client_secret (at %s) and client_secret_file are set; keep one.", o.ClientSecretRange)
	}
	if o.ClientSecret != nil {
		out.ClientSecret = *o.ClientSecret
		if strings.ContainsAny(out.ClientSecret, "\r\n\x00") || out.ClientSecret == "" || len(out.ClientSecret) > maxOAuth2Value {
			// The value is not quoted: it is a secret.
			p.errorf(o.ClientSecretRange, "Invalid client_secret",
				"client_secret must be a non-empty line of at most %d bytes.", maxOAuth2Value)
		}
	}
	if o.ClientSecretFile != nil {
		out.ClientSecretFile, _ = p.path(*o.ClientSecretFile, o.ClientSecretFileRange)
	}

	if o.Tenant != nil {
		out.Tenant = *o.Tenant
		if out.Provider != ProviderMicrosoft {
			p.errorf(o.TenantRange, "tenant without Microsoft",
				`tenant applies to provider = "microsoft" only.`)
		} else if !tenantRE(out.Tenant) {
			p.errorf(o.TenantRange, "Invalid tenant",
				`tenant is "common", "organizations", "consumers", a tenant ID (GUID) or a domain such as "contoso.onmicrosoft.com", not %q.`, out.Tenant)
		}
	}

	switch {
	case o.Flow != nil:
		out.Flow = strings.ToLower(*o.Flow)
		if out.Flow != FlowDevice && out.Flow != FlowBrowser && out.Flow != FlowClientCredentials {
			p.errorf(o.FlowRange, "Invalid flow",
				`flow must be "device", "browser" or "client_credentials", not %q.`, *o.Flow)
		}
	case out.Provider == ProviderMicrosoft:
		out.Flow = FlowDevice
	case out.Provider == ProviderGoogle:
		out.Flow = FlowBrowser
	case o.DeviceURL != nil:
		out.Flow = FlowDevice
	default:
		out.Flow = FlowBrowser
	}
	if out.Flow == FlowClientCredentials && o.ClientSecret == nil && o.ClientSecretFile == nil {
		p.errorf(o.DefRange, "Missing client secret",
			`flow = "client_credentials" authenticates the application itself; set client_secret_file (or client_secret).`)
	}

	switch out.Provider {
	case ProviderMicrosoft:
		if out.Tenant == "" {
			out.Tenant = defaultTenant
		}
		if out.Flow == FlowClientCredentials && (out.Tenant == "common" || out.Tenant == "organizations" || out.Tenant == "consumers") && isSet(o.FlowRange) {
			p.errorf(o.FlowRange, "client_credentials needs a tenant",
				`App-only access is granted by one tenant's admin; set tenant to its ID or domain, not %q.`, out.Tenant)
		}
		base := microsoftBase + url.PathEscape(out.Tenant) + "/oauth2/v2.0/"
		out.AuthURL, out.TokenURL, out.DeviceURL = base+"authorize", base+"token", base+"devicecode"
		out.Scopes = []string{MicrosoftScopeUser, microsoftOffline}
		if out.Flow == FlowClientCredentials {
			out.Scopes = []string{MicrosoftScopeApp}
		}
	case ProviderGoogle:
		out.AuthURL, out.TokenURL, out.DeviceURL = googleAuthURL, googleTokenURL, googleDeviceURL
		out.Scopes = []string{GoogleScopeMail}
		if out.Flow == FlowClientCredentials {
			p.errorf(o.FlowRange, "No app-only access at Google",
				`Google offers no client_credentials access to Gmail; use flow = "browser".`)
		}
	}
	for _, u := range []struct {
		v    *string
		rng  hcl.Range
		name string
		dst  *string
	}{{o.AuthURL, o.AuthURLRange, "auth_url", &out.AuthURL}, {o.TokenURL, o.TokenURLRange, "token_url", &out.TokenURL}, {o.DeviceURL, o.DeviceURLRange, "device_url", &out.DeviceURL}} {
		if u.v == nil {
			continue
		}
		if out.Provider != ProviderGeneric {
			p.errorf(u.rng, "Endpoint with a preset provider",
				`%s is set by provider = %q; set provider = "generic" to give the endpoints yourself.`, u.name, out.Provider)
			continue
		}
		*u.dst = p.endpoint(*u.v, u.rng, u.name)
	}
	if out.Provider == ProviderGeneric {
		need := []struct {
			rng  hcl.Range
			name string
		}{{o.TokenURLRange, "token_url"}}
		switch out.Flow {
		case FlowDevice:
			need = append(need, struct {
				rng  hcl.Range
				name string
			}{o.DeviceURLRange, "device_url"})
		case FlowBrowser:
			need = append(need, struct {
				rng  hcl.Range
				name string
			}{o.AuthURLRange, "auth_url"})
		}
		for _, n := range need {
			if !isSet(n.rng) {
				p.errorf(o.DefRange, "Missing "+n.name,
					`provider = "generic" with flow = %q needs %s = "https://...".`, out.Flow, n.name)
			}
		}
	}

	if o.Scopes != nil {
		out.Scopes = slices.Clone(*o.Scopes)
		for _, s := range out.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\r\n\"\\\x00") || len(s) > maxOAuth2Value {
				p.errorf(o.ScopesRange, "Invalid scope", "%q is not a scope: scopes are single words without spaces or quotes (RFC 6749 §3.3).", s)
			}
		}
	}
	if len(out.Scopes) == 0 && out.Provider == ProviderGeneric && !isSet(o.ScopesRange) {
		p.errorf(o.DefRange, "Missing scopes", `provider = "generic" needs scopes = [...], the scopes that give POP3 access.`)
	}
	if out.Provider == ProviderMicrosoft && out.Flow != FlowClientCredentials && o.Scopes != nil && !slices.Contains(out.Scopes, microsoftOffline) {
		p.warnf(o.ScopesRange, "No offline_access scope",
			"Without offline_access Microsoft issues no refresh token, and popfetch login will fail; add \"offline_access\" to scopes.")
	}
	if out.Provider == ProviderGoogle && out.Flow == FlowDevice && slices.Contains(out.Scopes, GoogleScopeMail) {
		p.errorf(o.FlowRange, "Google's device flow cannot read mail",
			`Google's device flow does not allow the %s scope; use flow = "browser" (popfetch login offers a paste-the-URL fallback for servers without a browser).`, GoogleScopeMail)
	}
	return out
}

func (p *parser) oauth2Value(v string, rng hcl.Range, name string) {
	if v == "" || strings.ContainsAny(v, "\r\n\x00") || len(v) > maxOAuth2Value {
		p.errorf(rng, "Invalid "+name, "%s must be a non-empty line of at most %d bytes.", name, maxOAuth2Value)
	}
}

// endpoint checks an OAuth2 endpoint URL: https, or http on a loopback
// address only (a test identity provider). Tokens, codes and secrets
// travel over it, so a plaintext endpoint elsewhere would give them away.
func (p *parser) endpoint(v string, rng hcl.Range, name string) string {
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		p.errorf(rng, "Invalid "+name, "%s must be an absolute URL such as \"https://idp.example.com/oauth2/token\", not %q.", name, v)
	case u.User != nil:
		p.errorf(rng, "Invalid "+name, "%s must not contain a user name or password.", name)
	case u.Fragment != "":
		p.errorf(rng, "Invalid "+name, "%s must not contain a #fragment.", name)
	case u.Scheme == "https":
		return v
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
		return v
	case u.Scheme == "http":
		p.errorf(rng, "Insecure "+name, "%s must use https (http is allowed only on a loopback address): tokens and secrets travel over it.", name)
	default:
		p.errorf(rng, "Invalid "+name, "%s must be an https URL, not %q.", name, v)
	}
	return ""
}

func loopbackHost(h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback()
	}
	return strings.EqualFold(h, "localhost")
}

// tenantRE accepts what login.microsoftonline.com takes in the path: the
// three audiences, a GUID, or a domain name.
func tenantRE(t string) bool {
	if t == "" || len(t) > 253 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// oauth2Source validates the account's oauth2 block or
// oauth2_token_command; at most one of the two may be set.
func (p *parser) oauth2Source(s *settingsHCL) (*OAuth2, []string) {
	var o *OAuth2
	var cmd []string
	if s.OAuth2 != nil {
		o = p.oauth2(s.OAuth2)
	}
	if s.OAuth2TokenCommand != nil {
		cmd = *s.OAuth2TokenCommand
		p.commandAttr(cmd, s.OAuth2TokenCommandRange, "oauth2_token_command", `["oama", "access", "joe@example.com"]`)
		if s.OAuth2 != nil {
			p.errorf(s.OAuth2TokenCommandRange, "Two OAuth2 token sources",
				"Both an oauth2 block (at %s) and oauth2_token_command are set; keep one.", s.OAuth2.DefRange)
		}
		if cmd == nil {
			cmd = []string{}
		}
	}
	return o, cmd
}
