// Package redact masks known secrets in text that came from a peer (a
// POP3 server's -ERR, an identity provider's error_description) before
// that text goes into an error, a log line or a hold reason: a peer that
// echoes the request (the command line, the form it was posted) would
// otherwise hand back the password, a token or the client secret.
package redact

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
)

// Mask replaces what hides a secret.
const Mask = "***"

// minFragment is the shortest run of secret-like characters that is
// masked when it is only part of a secret (an echo cut short by the
// peer): shorter runs are too likely to be ordinary words.
const minFragment = 8

// Secrets masks every occurrence of each non-empty secret in text,
// longest first (so that a secret containing another goes whole), then
// every run of at least minFragment characters of the base64 and bearer
// token alphabets (RFC 4648, RFC 6750 §2.1) that is part of a secret: a
// peer that quotes a line only up to some length echoes a prefix.
func Secrets(text string, secrets ...string) string {
	var ss []string
	for _, s := range secrets {
		if s != "" {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return text
	}
	sort.Slice(ss, func(i, j int) bool { return len(ss[i]) > len(ss[j]) })
	for _, s := range ss {
		text = strings.ReplaceAll(text, s, Mask)
		// The mask next to what was left may spell the secret again
		// ("x***" in "xx***"); each round shortens the text.
		for len(s) > len(Mask) && strings.Contains(text, s) {
			text = strings.ReplaceAll(text, s, Mask)
		}
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		j := i
		for j < len(text) && tokenChar(text[j]) {
			j++
		}
		if j == i {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(fragment(text[i:j], ss))
		i = j
	}
	return b.String()
}

// fragment masks run if it, or it without the dots that mark a cut
// ("AHVz..."), is at least minFragment long and part of a secret, or of
// the secret re-encoded in the URL-safe base64 alphabet (RFC 4648 §5: "-"
// and "_" for "+" and "/"), which a peer that decodes and re-encodes a
// SASL response may echo.
func fragment(run string, secrets []string) string {
	core := strings.TrimRight(run, ".")
	if len(core) < minFragment {
		return run
	}
	for _, s := range secrets {
		if strings.Contains(s, core) || strings.Contains(urlSafe.Replace(s), core) {
			return Mask + run[len(core):]
		}
	}
	return run
}

var urlSafe = strings.NewReplacer("+", "-", "/", "_")

func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+/=-_.~", c) >= 0
}

// Encoded returns secrets together with the forms an HTTP request
// carries them in, for Secrets: percent-encoded as in a form body or a
// query (application/x-www-form-urlencoded) and as in a path. A peer that
// echoes the request it received quotes these, not the secret itself.
func Encoded(secrets ...string) []string {
	var out []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		out = append(out, s)
		for _, e := range []string{url.QueryEscape(s), url.PathEscape(s)} {
			if e != s {
				out = append(out, e)
			}
		}
	}
	return out
}

// Basic returns, for Secrets, the credentials of HTTP Basic
// authentication (RFC 7617) that user and password make: base64 of
// "user:password", and of both form-encoded first as OAuth2 clients send
// them (RFC 6749 §2.3.1).
func Basic(user, password string) []string {
	if password == "" {
		return nil
	}
	raw := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	enc := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(user) + ":" + url.QueryEscape(password)))
	if enc == raw {
		return []string{raw}
	}
	return []string{raw, enc}
}
