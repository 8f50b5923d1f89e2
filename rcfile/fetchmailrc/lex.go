// Package fetchmailrc reads a fetchmail run control file (~/.fetchmailrc)
// and translates it into an equivalent popfetch rc file. Its one job is
// the migration: nothing else in popfetch reads fetchmail's format.
//
// The grammar is the one described in fetchmail(1), "THE RUN CONTROL
// FILE" and "KEYWORD/OPTION SUMMARY": free-format tokens (keywords,
// numbers, unquoted and quoted strings), '#' comments, the noise words
// "and with has wants options" and the punctuation ", ; :" ignored, "="
// between two names of a mapping.
package fetchmailrc

import (
	"fmt"
	"strings"
)

type tokKind int

const (
	tWord   tokKind = iota // unquoted string or keyword
	tString                // quoted string: never a keyword
	tNumber                // unquoted decimal digits (with an optional sign)
	tMap                   // "="
)

type token struct {
	kind tokKind
	text string
	line int
}

// maxTokens bounds the work on a hostile or corrupt input: a real rc file
// has a few hundred tokens.
const maxTokens = 200000

// lex splits src into tokens. It fails on an unterminated quoted string
// and on a file with more than maxTokens tokens.
func lex(src []byte) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == ',' || c == ';' || c == ':':
			i++
			continue
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			continue
		}
		if len(toks) >= maxTokens {
			return nil, fmt.Errorf("line %d: more than %d tokens; this is not a fetchmailrc", line, maxTokens)
		}
		switch {
		case c == '=':
			toks = append(toks, token{tMap, "=", line})
			i++
		case c == '"' || c == '\'':
			start := line
			s, n, lines, err := quoted(src[i:])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", start, err)
			}
			toks = append(toks, token{tString, s, start})
			i += n
			line += lines
		default:
			// An unquoted string runs to the next blank or separator; a
			// quote or '#' inside it is part of it, as in fetchmail's
			// lexer, which takes the longest match.
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n\f\v,;:=", rune(src[j])) {
				j++
			}
			w := string(src[i:j])
			k := tWord
			if isNumber(w) {
				k = tNumber
			}
			toks = append(toks, token{k, w, line})
			i = j
		}
	}
	return toks, nil
}

func isNumber(w string) bool {
	d := strings.TrimPrefix(w, "-")
	if d == "" {
		return false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// quoted reads the quoted string at the start of b (b[0] is the quote,
// '"' or, as fetchmail's lexer also takes, '\”) with
// fetchmail's escapes: \n \t \b \r, \nnn decimal (not starting with 0),
// \0ooo octal, \xhh hex, a backslash before a line end joins the lines,
// and a backslash before any other character is that character. It
// returns the value, the bytes consumed and the line ends crossed.
func quoted(b []byte) (string, int, int, error) {
	var out []byte
	lines := 0
	i := 1
	for i < len(b) {
		c := b[i]
		switch c {
		case b[0]:
			return string(out), i + 1, lines, nil
		case '\n':
			lines++
			out = append(out, c)
			i++
			continue
		case '\\':
		default:
			out = append(out, c)
			i++
			continue
		}
		i++ // the backslash
		if i >= len(b) {
			break
		}
		e := b[i]
		switch {
		case e == '\n':
			lines++
			i++
		case e == '\r' && i+1 < len(b) && b[i+1] == '\n':
			lines++
			i += 2
		case e == 'n':
			out = append(out, '\n')
			i++
		case e == 't':
			out = append(out, '\t')
			i++
		case e == 'b':
			out = append(out, '\b')
			i++
		case e == 'r':
			out = append(out, '\r')
			i++
		case e == 'x' || e == 'X':
			v, n := digits(b[i+1:], 16, 2)
			if n == 0 {
				out = append(out, e)
			} else {
				out = append(out, byte(v))
			}
			i += 1 + n
		case e == '0':
			v, n := digits(b[i+1:], 8, 3)
			out = append(out, byte(v))
			i += 1 + n
		case e >= '1' && e <= '9':
			v, n := digits(b[i:], 10, 3)
			out = append(out, byte(v))
			i += n
		default:
			out = append(out, e)
			i++
		}
	}
	return "", 0, 0, fmt.Errorf("quoted string not terminated")
}

// digits reads up to max digits of base from b.
func digits(b []byte, base, max int) (v, n int) {
	for n < max && n < len(b) {
		d := -1
		c := b[n]
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		}
		if d < 0 || d >= base {
			break
		}
		v = v*base + d
		n++
	}
	return v & 0xff, n
}
