// Package oauthtest is a fake OAuth2 identity provider for tests, in the
// manner of net/http/httptest: it issues, expires, rotates and revokes
// tokens, and serves the endpoints popfetch uses (RFC 8628 device
// authorization, RFC 6749 authorization with RFC 7636 PKCE, token) plus an
// RFC 7662 introspection endpoint in the form dovecot's oauth2 passdb
// queries with introspection_mode = post (a form body token=..., a JSON
// answer with active and username), so a real dovecot can accept its
// tokens over XOAUTH2 and OAUTHBEARER. It listens on 127.0.0.1 over plain
// HTTP (loopback endpoints may be http).
//
// It is imported by tests only; it does not import package testing.
package oauthtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/popfetch/popfetch/rcfile"
)

// Server is a running fake identity provider.
type Server struct {
	URL string // http://127.0.0.1:port

	// Settings; change them before the requests they affect.
	ClientID     string        // the one client it knows; default "popfetch-test"
	ClientSecret string        // "" = a public client (no secret checked)
	User         string        // whom sign-ins are for; default "alice"
	AccessTTL    time.Duration // lifetime of access tokens; default 1h
	// Rotate issues a new refresh token at every refresh and invalidates
	// the old one. Presenting an invalidated refresh token revokes the
	// whole grant (RFC 9700 §4.14.2, refresh token reuse detection), as
	// strict providers do: a client that loses a rotation race loses
	// everything.
	Rotate bool
	// AutoApprove approves every device code at once (no Approve call).
	AutoApprove bool
	// RefreshTTL, if set, limits a grant's life as Google does for apps
	// in testing mode and time-based access: its refresh tokens stop
	// working RefreshTTL after the sign-in, and every response that
	// issues a refresh token (the sign-in, a rotation) says how long it
	// has left in refresh_token_expires_in (seconds). A refresh that
	// issues none does not repeat it. Set back to 0 after a sign-in, the
	// grant keeps its end but no response says it any more.
	RefreshTTL time.Duration

	hs  *httptest.Server
	mu  sync.Mutex
	now func() time.Time

	access   map[string]*grantToken // access token → grant
	refresh  map[string]*grant      // live refresh token → grant
	used     map[string]*grant      // rotated-away refresh tokens
	devices  map[string]*device     // device_code → state
	userCode map[string]*device
	codes    map[string]*authCode
	counts   map[string]int
	down     bool
	delay    time.Duration
}

type grant struct {
	user    string
	revoked bool
	exp     time.Time // zero: no end (RefreshTTL unset at the sign-in)
}

// newGrant starts a grant for user, limited by RefreshTTL.
func (s *Server) newGrant(user string) *grant {
	g := &grant{user: user}
	if s.RefreshTTL > 0 {
		g.exp = s.now().Add(s.RefreshTTL)
	}
	return g
}

type grantToken struct {
	g   *grant
	exp time.Time
}

type device struct {
	user     string
	approved bool
	denied   bool
	exp      time.Time
}

type authCode struct {
	user, redirect, challenge string
	used                      bool
}

// Start starts a provider; Close stops it.
func Start() *Server {
	s := &Server{
		ClientID: "popfetch-test", User: "alice", AccessTTL: time.Hour, now: time.Now,
		access: map[string]*grantToken{}, refresh: map[string]*grant{}, used: map[string]*grant{},
		devices: map[string]*device{}, userCode: map[string]*device{}, codes: map[string]*authCode{}, counts: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/device", s.handleDevice)
	mux.HandleFunc("/authorize", s.handleAuthorize)
	mux.HandleFunc("/token", s.handleToken)
	mux.HandleFunc("/introspect", s.handleIntrospect)
	s.hs = httptest.NewServer(mux)
	s.URL = s.hs.URL
	return s
}

// Close shuts the provider down.
func (s *Server) Close() { s.hs.Close() }

// Endpoints.
func (s *Server) DeviceURL() string     { return s.URL + "/device" }
func (s *Server) AuthURL() string       { return s.URL + "/authorize" }
func (s *Server) TokenURL() string      { return s.URL + "/token" }
func (s *Server) IntrospectURL() string { return s.URL + "/introspect" }

// Registration is an account's oauth2 block for this provider: its
// client (and secret, if set) with scope "pop", its endpoints, and flow.
func (s *Server) Registration(flow string) *rcfile.OAuth2 {
	return &rcfile.OAuth2{
		Provider: rcfile.ProviderGeneric, ClientID: s.ClientID, ClientSecret: s.ClientSecret,
		Scopes: []string{"pop"}, Flow: flow,
		AuthURL: s.AuthURL(), TokenURL: s.TokenURL(), DeviceURL: s.DeviceURL(),
	}
}

// Approve approves the device sign-in with this user code, as the user
// would in a browser. It reports whether the code was pending.
func (s *Server) Approve(userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.userCode[userCode]
	if d == nil || d.approved {
		return false
	}
	d.approved = true
	return true
}

// Deny refuses the device sign-in with this user code.
func (s *Server) Deny(userCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.userCode[userCode]; d != nil {
		d.denied = true
	}
}

// ExpireAccess makes every access token issued so far expired.
func (s *Server) ExpireAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.access {
		t.exp = time.Time{}
	}
}

// RevokeAll revokes every grant: refresh tokens answer invalid_grant and
// access tokens are no longer active (a password change, an admin's
// revocation).
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.refresh {
		g.revoked = true
	}
	for _, t := range s.access {
		t.g.revoked = true
	}
}

// SetDown makes the token endpoint answer 503 (an outage), or not.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetTokenDelay makes the token endpoint wait d before it answers, so
// that tests can make two clients' requests overlap.
func (s *Server) SetTokenDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Count reports how many requests of a kind were served: "refresh",
// "device_code", "authorization_code", "client_credentials",
// "introspect", "reuse" (a rotated-away refresh token presented).
func (s *Server) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[kind]
}

// Active reports whether access token tok is currently accepted, and for
// whom.
func (s *Server) Active(tok string) (user string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active(tok)
}

func (s *Server) active(tok string) (string, bool) {
	t := s.access[tok]
	if t == nil || t.g.revoked || !s.now().Before(t.exp) {
		return "", false
	}
	return t.g.user, true
}

// Secrets returns every token and code the provider ever issued, for
// tests that check none of them leaks into logs or output.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.access {
		out = append(out, k)
	}
	for k := range s.refresh {
		out = append(out, k)
	}
	for k := range s.used {
		out = append(out, k)
	}
	for k := range s.codes {
		out = append(out, k)
	}
	for k := range s.devices {
		out = append(out, k)
	}
	if s.ClientSecret != "" {
		out = append(out, s.ClientSecret)
	}
	return out
}

func token(prefix string) string {
	b := make([]byte, 18)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// client checks the client's id (and secret, if the provider has one),
// from the form or HTTP Basic (RFC 6749 §2.3.1).
func (s *Server) client(r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == s.ClientID && (s.ClientSecret == "" || secret == s.ClientSecret)
}

func (s *Server) handleDevice(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		oauthError(w, 400, "invalid_request", "POST a form")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.PostForm.Get("client_id") != s.ClientID {
		oauthError(w, 401, "invalid_client", "unknown client")
		return
	}
	dc := token("dc-")
	uc := strings.ToUpper(token("")[:8])
	uc = strings.NewReplacer("-", "X", "_", "Y").Replace(uc)
	d := &device{user: s.User, exp: s.now().Add(10 * time.Minute), approved: s.AutoApprove}
	s.devices[dc], s.userCode[uc] = d, d
	writeJSON(w, 200, map[string]any{
		"device_code": dc, "user_code": uc, "verification_uri": s.URL + "/devicelogin",
		"expires_in": 600, "interval": 1,
	})
}

// handleAuthorize approves at once (the "user" is always s.User) and
// redirects to the loopback redirect_uri with the code and state.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	if q.Get("client_id") != s.ClientID {
		http.Error(w, "unknown client", 400)
		return
	}
	ru, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || ru.Scheme != "http" || ru.Hostname() != "127.0.0.1" {
		http.Error(w, "redirect_uri must be a loopback http URL", 400)
		return
	}
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "PKCE with S256 is required", 400)
		return
	}
	code := token("code-")
	s.codes[code] = &authCode{user: s.User, redirect: ru.String(), challenge: q.Get("code_challenge")}
	v := url.Values{"code": {code}, "state": {q.Get("state")}}
	ru.RawQuery = v.Encode()
	http.Redirect(w, r, ru.String(), http.StatusFound)
}

func (s *Server) issue(w http.ResponseWriter, g *grant, withRefresh bool) {
	at := token("at-")
	s.access[at] = &grantToken{g: g, exp: s.now().Add(s.AccessTTL)}
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(s.AccessTTL / time.Second)}
	if withRefresh {
		rt := token("rt-")
		s.refresh[rt] = g
		resp["refresh_token"] = rt
		if !g.exp.IsZero() && s.RefreshTTL > 0 {
			resp["refresh_token_expires_in"] = int(g.exp.Sub(s.now()) / time.Second)
		}
	}
	writeJSON(w, 200, resp)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		oauthError(w, 400, "invalid_request", "POST a form")
		return
	}
	s.mu.Lock()
	d := s.delay
	s.mu.Unlock()
	time.Sleep(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if !s.client(r) {
		oauthError(w, 401, "invalid_client", "client authentication failed")
		return
	}
	f := r.PostForm
	switch gt := f.Get("grant_type"); gt {
	case "urn:ietf:params:oauth:grant-type:device_code":
		d := s.devices[f.Get("device_code")]
		switch {
		case d == nil:
			oauthError(w, 400, "invalid_grant", "unknown device code")
		case d.denied:
			oauthError(w, 400, "access_denied", "the user refused")
		case !s.now().Before(d.exp):
			oauthError(w, 400, "expired_token", "device code expired")
		case !d.approved:
			oauthError(w, 400, "authorization_pending", "waiting for the user")
		default:
			s.counts["device_code"]++
			delete(s.devices, f.Get("device_code"))
			s.issue(w, s.newGrant(d.user), true)
		}
	case "authorization_code":
		c := s.codes[f.Get("code")]
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		switch {
		case c == nil || c.used:
			oauthError(w, 400, "invalid_grant", "unknown or used code")
		case f.Get("redirect_uri") != c.redirect:
			oauthError(w, 400, "invalid_grant", "redirect_uri mismatch")
		case base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
			oauthError(w, 400, "invalid_grant", "PKCE verification failed")
		default:
			c.used = true
			s.counts["authorization_code"]++
			s.issue(w, s.newGrant(c.user), true)
		}
	case "refresh_token":
		rt := f.Get("refresh_token")
		if g := s.used[rt]; g != nil {
			// Reuse of a rotated token: revoke the grant.
			s.counts["reuse"]++
			g.revoked = true
			oauthError(w, 400, "invalid_grant", "refresh token already used; grant revoked")
			return
		}
		g := s.refresh[rt]
		if g == nil || g.revoked || !g.exp.IsZero() && !s.now().Before(g.exp) {
			oauthError(w, 400, "invalid_grant", "refresh token revoked or expired")
			return
		}
		s.counts["refresh"]++
		if s.Rotate {
			delete(s.refresh, rt)
			s.used[rt] = g
		}
		s.issue(w, g, s.Rotate)
	case "client_credentials":
		s.counts["client_credentials"]++
		s.issue(w, &grant{user: s.User}, false)
	default:
		oauthError(w, 400, "unsupported_grant_type", fmt.Sprintf("grant_type %q", gt))
	}
}

// handleIntrospect answers as RFC 7662 §2.2 says, in the form dovecot's
// oauth2 passdb reads with introspection_mode = post: {"active": true,
// "username": ...} for a live token, {"active": false} otherwise.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		http.Error(w, "POST a form", 400)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts["introspect"]++
	user, ok := s.active(r.PostForm.Get("token"))
	if !ok {
		writeJSON(w, 200, map[string]any{"active": false})
		return
	}
	writeJSON(w, 200, map[string]any{"active": true, "username": user, "client_id": s.ClientID})
}
