// Package redact masks known secrets in text that came from a peer (a
// POP3 server's -ERR, an identity provider's error_description) before
// that text goes into an error, a log line or a hold reason: a peer that
// echoes the request (the command line, the form it was posted) would
// otherwise hand back the password, a token or the client secret.
package redact

import (
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
