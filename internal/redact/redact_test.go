package redact

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSecrets(t *testing.T) {
	for _, tt := range []struct {
		text    string
		secrets []string
		want    string
	}{
		{"bad command AUTH PLAIN AHVzZXIAcGFzcw==", []string{"AHVzZXIAcGFzcw==", "pass"}, "bad command AUTH PLAIN ***"},
		{"PASS Sup3rSecretPw rejected", []string{"Sup3rSecretPw"}, "PASS *** rejected"},
		{"line was AUTH PLAIN AHVzZXIAcG...", []string{"AHVzZXIAcGFzcw=="}, "line was AUTH PLAIN ***..."},
		{"refresh_token=RT-abc123&x=1", []string{"RT-abc123"}, "refresh_token=***&x=1"},
		{"ab ab", []string{"ab"}, "*** ***"},
		{"nothing secret here", []string{"", "zzzzzzzzzz"}, "nothing secret here"},
		{"short frag AHVz end", []string{"AHVzZXIAcGFzcw=="}, "short frag AHVz end"},
		{"no secrets", nil, "no secrets"},
		{"xx***", []string{"x***"}, "***"},
	} {
		if got := Secrets(tt.text, tt.secrets...); got != tt.want {
			t.Errorf("Secrets(%q, %q) = %q; want %q", tt.text, tt.secrets, got, tt.want)
		}
	}
}

// FuzzSecrets: whatever the text, no secret of minFragment bytes or more
// survives.
func FuzzSecrets(f *testing.F) {
	f.Add("-ERR bad AUTH PLAIN AHVzZXIAcGFzcw==", "AHVzZXIAcGFzcw==")
	f.Add("xx s3cretvalue yy", "s3cretvalue")
	f.Add("xx a*b*c*d*e yy", "a*b*c*d*e")
	f.Fuzz(func(t *testing.T, text, secret string) {
		got := Secrets(text, secret)
		if len(secret) < minFragment || !strings.Contains(got, secret) {
			return
		}
		// A secret with a '*' in it may be spelt by a Mask next to
		// text that is no part of the secret ("***!ZZZZZZZZ" from
		// "ZZZZZZZZ!ZZZZZZZZY": a masked fragment, then a longer
		// run). The same text and secret with each '*' written as a
		// byte that is in neither and, like '*', no token character
		// make the masks the only '*': what still holds the secret
		// then is text that was not masked.
		if strings.Contains(secret, "*") {
			spare := -1
			for c := 0; c < utf8.RuneSelf && spare < 0; c++ {
				if !tokenChar(byte(c)) && c != '*' && !strings.ContainsRune(text+secret, rune(c)) {
					spare = c
				}
			}
			if spare < 0 {
				return // every such byte is taken: nothing to rename to
			}
			r := strings.NewReplacer("*", string(rune(spare)))
			if text, secret := r.Replace(text), r.Replace(secret); !strings.Contains(Secrets(text, secret), secret) {
				return
			}
		}
		t.Errorf("Secrets(%q, %q) = %q still holds the secret", text, secret, got)
	})
}

// TestEncoded: a secret echoed as an HTTP request carried it (form body,
// path, Basic credentials) is masked like the secret itself.
func TestEncoded(t *testing.T) {
	const rt = "1//0gAbCdEfGhIjKl+Mn="
	const secret = "GOCSPX-Ab+Cd/Ef=Gh"
	basic := base64.StdEncoding.EncodeToString([]byte("cid:" + url.QueryEscape(secret)))
	for _, tt := range []struct {
		name, text string
	}{
		{"form body", "bad request: grant_type=refresh_token&refresh_token=" + url.QueryEscape(rt) + "&client_secret=" + url.QueryEscape(secret)},
		{"path", "no route /revoke/" + url.PathEscape(rt)},
		{"basic header", "bad request: Basic " + basic},
		{"basic header raw", "bad request: Basic " + base64.StdEncoding.EncodeToString([]byte("cid:"+secret))},
		{"basic header cut", "bad request: Basic " + basic[:20] + "..."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Secrets(tt.text, append(Encoded(rt, secret), Basic("cid", secret)...)...)
			for _, leak := range []string{"0gAbCdEf", "Ab%2BCd%2FEf", "IjKl%2BMn", basic[4:20]} {
				if strings.Contains(got, leak) {
					t.Errorf("Secrets(%q) = %q still holds %q", tt.text, got, leak)
				}
			}
			if !strings.Contains(got, Mask) {
				t.Errorf("Secrets(%q) = %q masks nothing", tt.text, got)
			}
		})
	}
	if got := Encoded("", "plain"); len(got) != 1 || got[0] != "plain" {
		t.Errorf("Encoded(\"\", \"plain\") = %q; want [plain]", got)
	}
	if got := Basic("cid", ""); got != nil {
		t.Errorf("Basic with no password = %q; want none", got)
	}
}

// TestSecretsURLSafe: a peer that decodes a SASL response and echoes it
// re-encoded in the URL-safe alphabet (RFC 4648 §5), whole or cut short,
// is masked like the standard encoding.
func TestSecretsURLSafe(t *testing.T) {
	resp := []byte("\x00user\x00" + "Sup3r?Secret>Pw")
	std := base64.StdEncoding.EncodeToString(resp)
	url := base64.URLEncoding.EncodeToString(resp)
	raw := base64.RawURLEncoding.EncodeToString(resp)
	if url == std || !strings.ContainsAny(url, "-_") {
		t.Fatalf("test response %q does not tell the alphabets apart", resp)
	}
	for _, tt := range []struct{ name, text, want string }{
		{"whole", "-ERR bad " + url, "-ERR bad ***"},
		{"unpadded", "-ERR bad " + raw + " end", "-ERR bad *** end"},
		{"cut short", "-ERR bad " + url[:20] + "...", "-ERR bad ***..."},
		{"standard still", "-ERR bad " + std, "-ERR bad ***"},
	} {
		if got := Secrets(tt.text, std); got != tt.want {
			t.Errorf("%s: Secrets(%q) = %q; want %q", tt.name, tt.text, got, tt.want)
		}
	}
}
