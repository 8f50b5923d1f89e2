// Package logsafe makes text that came from outside (a message's header,
// a server's reply) safe to put in a log record: a terminal that shows the
// log must not interpret any of it, and a reader of the log must see
// exactly which bytes were there.
package logsafe

import (
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Escape returns s with every byte that is not valid UTF-8, every control
// character (C0 including CR, LF, TAB and ESC, DEL, C1) and every
// bidirectional control that can make text read in another order than it
// is stored ("Trojan Source") written as a Go-style escape (\x1b, \r,
// \u202e), and a backslash doubled, so the escaped text maps back to one
// input only. With max > 0 at most max runes of s are kept, followed by
// "…" when it cut. The usual case, plain text, is returned as it is.
func Escape(s string, max int) string {
	if !needs(s) && (max <= 0 || utf8.RuneCountInString(s) <= max) {
		return s
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); {
		if max > 0 && n == max {
			b.WriteString("…")
			break
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case Unsafe(r) && r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case Unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+w])
		}
		i += w
		n++
	}
	return b.String()
}

// needs reports whether Escape changes anything in s but its length.
func needs(s string) bool {
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 || r == '\\' || Unsafe(r) {
			return true
		}
		i += w
	}
	return false
}

// Unsafe reports whether r must not reach a log or a terminal as it is: a
// control character (C0, DEL, C1) or a bidirectional control. It is the
// one rule; the renderings differ by reader (Escape for logs; package
// main's printable and termSafe for a terminal, package pop3's sanitize
// for a quoted server reply).
func Unsafe(r rune) bool {
	return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 ||
		r == '\u061c' || r == '\u200e' || r == '\u200f' ||
		r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

// Seconds is a slog.HandlerOptions.ReplaceAttr for JSON logs: it writes
// every duration (elapsed, age, retry_in, ..., in a group too) as seconds
// in a float, which every log pipeline reads, rather than slog's integer
// nanoseconds. A text log keeps the human unit ("1.5s", "2h0m0s").
func Seconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}
