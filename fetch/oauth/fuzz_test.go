package oauth

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadTokens: a damaged token file is an error that never quotes the
// file (it holds tokens), never a panic.
func FuzzReadTokens(f *testing.F) {
	f.Add([]byte(`{"access_token":"at-secretvalue","refresh_token":"rt-secretvalue","expiry":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"access_token":"at-secretvalue",`))
	f.Add([]byte(`at-secretvalue`))
	f.Add([]byte(`{"expiry":"at-secretvalue"}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "tok.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := readTokens(path)
		if err != nil && strings.Contains(err.Error(), "secretvalue") {
			t.Errorf("error quotes the file: %v", err)
		}
	})
}

// FuzzCodeFrom: a pasted redirect address yields a code only with the
// sign-in's state, and the error never quotes the code.
func FuzzCodeFrom(f *testing.F) {
	f.Add("http://127.0.0.1:1234/?code=c0de-secretvalue&state=S")
	f.Add("http://127.0.0.1:1234/?error=access_denied&error_description=no&state=S")
	f.Add("http://127.0.0.1:1234/?code=c0de-secretvalue&state=T")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		q := u.Query()
		code, err := codeFrom(q, "S")
		if err == nil && (q.Get("state") != "S" || code == "") {
			t.Errorf("codeFrom(%q) accepted state %q", s, q.Get("state"))
		}
		if err == nil || q.Get("code") == "" {
			return
		}
		// The same redirect with another code: text the error holds
		// either way (the message's own words, which a short code
		// may be part of, or a provider's description quoted on
		// purpose) is not the code quoted.
		// The other code is in no other value of the redirect (an
		// error_description may hold anything, and is quoted).
		sentinel := "Qx7-sentinel-code"
		for taken := true; taken; {
			taken = false
			for _, vs := range q {
				for _, v := range vs {
					taken = taken || strings.Contains(v, sentinel)
				}
			}
			if taken {
				sentinel += "-"
			}
		}
		other := url.Values{}
		for k, v := range q {
			other[k] = v
		}
		other.Set("code", sentinel)
		_, err2 := codeFrom(other, "S")
		if err2 != nil && strings.Contains(err2.Error(), sentinel) || strings.Contains(err.Error(), q.Get("code")) && (err2 == nil || !strings.Contains(err2.Error(), q.Get("code"))) {
			t.Errorf("error quotes the code: %v", err)
		}
	})
}
