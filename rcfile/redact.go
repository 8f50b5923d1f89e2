package rcfile

import (
	"bytes"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The rc file may hold a secret (password = "..."), and a diagnostic may
// show the source line it points at, or quote part of a value in its
// detail. No diagnostic, log line or check output may show a secret, so
// every rendering goes through the masking below. It works on the
// source text, not on the syntax tree, because it must also hold for a
// file that does not parse: an unterminated string, a misspelt attribute
// name, a heredoc.

// mask replaces a secret in rendered source and diagnostics.
const mask = "***"

// isSecretName says whether an attribute of this name holds a secret: the
// password, and any token or secret an account may get later (named
// token, secret, or ending in _password, _token or _secret). The names
// of a secret's source (password_file, password_env, password_command)
// are paths and names, not secrets.
func isSecretName(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"password", "token", "secret"} {
		if name == s || strings.HasSuffix(name, "_"+s) {
			return true
		}
	}
	return false
}

// knownAttrs is every attribute name of the schema. The value of an
// attribute that is not one of them is masked too: it is an error anyway,
// and a misspelt "passwrd" holds a password just the same.
var knownAttrs = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	walkSchema(reflect.TypeFor[fileHCL](), func(_ reflect.Type, name, kind string) {
		if kind != "block" {
			m[name] = true
		}
	})
	return m
})

// secretName finds a secret attribute's name anywhere in folded text
// (see fold), with the rest of its line: the fallback for text the lexer
// does not see as an attribute, such as a "password" line swallowed by an
// unterminated string above it, `password "x"` without the equals sign,
// a commented-out password line, or a name after a character HCL does
// not know. The name must not go on as a longer identifier
// (password_file is not a secret), and "password" inside a value (a host
// named mypassword.example.com) costs only the masked rest of its line.
var secretName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?im)(?:password|token|secret)"?(?:[^a-z0-9_\n][^\n]*)?$`)
})

// secretNameEnd finds where the name ends in a secretName match: after
// it, blanks, an = or : and blanks.
var secretNameEnd = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)^(?:password|token|secret)"?[ \t]*[=:]?[ \t]*`)
})

// fold returns src as the fallback sees it, with off[k] the offset in
// src of byte k of the result (and off[len] = len(src)): a CR is a line
// break (a file with CR line endings is one long line to HCL), form feed
// and vertical tab are blanks, and non-ASCII spaces and invisible
// formatting characters (no-break space, zero-width space, BOM) are
// removed, so that "pass\u200bword" is seen as password.
func fold(src []byte) (out []byte, off []int) {
	out = make([]byte, 0, len(src))
	off = make([]int, 0, len(src)+1)
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		switch {
		case r == '\r':
			out, off = append(out, '\n'), append(off, i)
		case r == '\f' || r == '\v':
			out, off = append(out, ' '), append(off, i)
		case r >= utf8.RuneSelf && (unicode.IsSpace(r) || unicode.Is(unicode.Cf, r)):
			// dropped
		default:
			for k := range n {
				out, off = append(out, src[i+k]), append(off, i+k)
			}
		}
		i += n
	}
	return out, append(off, len(src))
}

// span is a byte range [start, end) of the source; named says it is the
// value of an attribute with a secret's name (not only an unknown one).
type span struct {
	start, end int
	named      bool
}

// secretSpans returns the byte ranges of src that may hold a secret,
// sorted and merged: the value of every attribute with a secret or an
// unknown name, found with the HCL lexer (which also tokenizes broken
// files; a value runs to the end of its line, or further while a string,
// heredoc or bracket is open), plus the rest of every secretLine. It
// returns the tokens too, for redactDiags.
func secretSpans(src []byte) ([]span, hclsyntax.Tokens) {
	var out []span
	toks, _ := hclsyntax.LexConfig(src, "", hcl.InitialPos)
	lineStart := true
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		start := lineStart
		lineStart = tk.Type == hclsyntax.TokenNewline || tk.Type == hclsyntax.TokenOBrace
		if tk.Type == hclsyntax.TokenComment {
			// A # or // comment includes its newline.
			lineStart = bytes.HasSuffix(tk.Bytes, []byte("\n")) || start && bytes.HasPrefix(tk.Bytes, []byte("/*"))
			continue
		}
		if tk.Type != hclsyntax.TokenIdent || i+1 >= len(toks) {
			continue
		}
		name := string(tk.Bytes)
		next := toks[i+1].Type
		assign := next == hclsyntax.TokenEqual || next == hclsyntax.TokenColon
		secret := isSecretName(name) || name == "password_env" && assign && !envName(toks[i+2:])
		// An identifier followed by = or : is an attribute wherever it
		// is: after another one on the same line (a one-line block), after
		// a ; or , or a character HCL does not know. A secret's name
		// without = counts only at the start of a line.
		// An unknown name alone on its line may be a misspelt secret's
		// whose = and value are on the next line (`passwrd` newline
		// `= "s"`): appendValue takes the value from there.
		alone := start && !knownAttrs()[name] && (next == hclsyntax.TokenNewline || next == hclsyntax.TokenComment)
		if !assign && !(secret && start) && !alone || !secret && knownAttrs()[name] {
			continue
		}
		j := i + 1
		if assign {
			j++
		}
		var end int
		out, end = appendValue(out, toks, j, secret)
		i = end - 1
	}
	lexed := slices.Clone(out)
	slices.SortFunc(lexed, func(a, b span) int { return a.start - b.start })
	folded, off := fold(src)
	for _, m := range secretName().FindAllIndex(folded, -1) {
		n := secretNameEnd().FindIndex(folded[m[0]:m[1]])
		fs := m[0] + n[1]
		if k := tokenAt(toks, off[m[0]]); k >= 0 && toks[k].Type == hclsyntax.TokenIdent {
			// The name is in the code, not in a comment or string, but
			// the lexer did not take it for one (split by a zero-width
			// space, ended by a lone CR, not at the start of its line):
			// its value is what follows, with the lexer's idea of where
			// that ends. It can go on past the line the fallback sees
			// (`password /*` newline `*/ = "s"`), or be on the next line
			// (`password =` newline `'s'`).
			t := sort.Search(len(toks), func(t int) bool { return toks[t].Range.Start.Byte >= off[fs] })
			out, _ = appendValue(out, toks, t, true)
		}
		if len(bytes.TrimSpace(folded[fs:m[1]])) == 0 {
			continue // nothing more to hide
		}
		// Where the lexer found a value, it knows better where it ends;
		// the rest of the line is masked unless it is only blanks and
		// closing punctuation (the "}" of a one-line block). The match
		// runs from the line's first secret name to its end, so the rest
		// may hold another one: `{ password = "a" }" password = "b"`.
		out = append(out, outside(src, off[fs], off[m[1]], lexed)...)
	}
	return mergeSpans(out), toks
}

// outside returns the parts of [start, end) of src that no span of
// lexed covers and that hold more than blanks and closing punctuation.
func outside(src []byte, start, end int, lexed []span) []span {
	var out []span
	trivial := func(r rune) bool {
		return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || strings.ContainsRune("})],;", r)
	}
	add := func(s, e int) {
		if s < e && len(bytes.TrimFunc(src[s:e], trivial)) > 0 {
			out = append(out, span{s, e, true})
		}
	}
	for _, l := range lexed {
		if l.end <= start || l.start >= end {
			continue
		}
		add(start, l.start)
		start = max(start, l.end)
	}
	add(start, end)
	return out
}

// appendValue appends to out the span of the value that starts at
// toks[j] (see valueEnd), and returns the index after it. A value that
// is missing from its line (`password =` or `password` before a newline
// or a comment), or that ends in an operator (`password = "a" +`,
// `password = "a" api_token =`), goes on at the next line that has
// something: the admin meant it to, and HCL's complaint about that line
// (single quotes, say) shows it. That line is left alone if it starts
// an attribute or block of its own or closes the block.
func appendValue(out []span, toks hclsyntax.Tokens, j int, named bool) ([]span, int) {
	end := valueEnd(toks, j)
	for {
		last := end - 1
		for last >= j && toks[last].Type == hclsyntax.TokenComment {
			last--
		}
		if last >= j && !dangling[toks[last].Type] {
			break
		}
		k := end
		for k < len(toks) && (toks[k].Type == hclsyntax.TokenNewline || toks[k].Type == hclsyntax.TokenComment) {
			k++
		}
		if k == end || k >= len(toks) || ownItem(toks[k:]) {
			break
		}
		if last < j {
			j = k
		}
		end = valueEnd(toks, k)
	}
	if end > j {
		out = append(out, span{toks[j].Range.Start.Byte, toks[end-1].Range.End.Byte, named})
	}
	return out, end
}

// dangling holds the tokens after which an expression is not complete.
var dangling = map[hclsyntax.TokenType]bool{
	hclsyntax.TokenEqual: true, hclsyntax.TokenColon: true, hclsyntax.TokenPlus: true, hclsyntax.TokenMinus: true,
	hclsyntax.TokenStar: true, hclsyntax.TokenSlash: true, hclsyntax.TokenPercent: true, hclsyntax.TokenEqualOp: true,
	hclsyntax.TokenNotEqual: true, hclsyntax.TokenLessThan: true, hclsyntax.TokenLessThanEq: true,
	hclsyntax.TokenGreaterThan: true, hclsyntax.TokenGreaterThanEq: true, hclsyntax.TokenAnd: true, hclsyntax.TokenOr: true,
	hclsyntax.TokenBang: true, hclsyntax.TokenDot: true, hclsyntax.TokenComma: true, hclsyntax.TokenQuestion: true,
	hclsyntax.TokenFatArrow: true, hclsyntax.TokenDoubleColon: true, hclsyntax.TokenBitwiseAnd: true,
	hclsyntax.TokenBitwiseOr: true, hclsyntax.TokenBitwiseXor: true, hclsyntax.TokenBitwiseNot: true, hclsyntax.TokenStarStar: true,
}

// ownItem says whether toks start with something that is not a value
// left over from the line above: the end of the file or block, or an
// identifier followed by =, :, { or a label (another attribute or a
// block).
func ownItem(toks hclsyntax.Tokens) bool {
	switch toks[0].Type {
	case hclsyntax.TokenEOF, hclsyntax.TokenCBrace:
		return true
	case hclsyntax.TokenIdent:
		if len(toks) < 2 {
			return false
		}
		switch toks[1].Type {
		case hclsyntax.TokenEqual, hclsyntax.TokenColon, hclsyntax.TokenOBrace:
			return true
		case hclsyntax.TokenOQuote:
			// A block's label: the line ends with the brace.
			e := valueEnd(toks, 1)
			return e > 1 && toks[e-1].Type == hclsyntax.TokenOBrace
		}
	}
	return false
}

// tokenAt returns the index of the token of toks that holds byte o of
// the source, or -1.
func tokenAt(toks hclsyntax.Tokens, o int) int {
	k := sort.Search(len(toks), func(k int) bool { return toks[k].Range.End.Byte > o })
	if k < len(toks) && toks[k].Range.Start.Byte <= o {
		return k
	}
	return -1
}

// envName says whether toks start with a quoted environment variable
// name. A password_env whose value is anything else may be a password put
// in the wrong attribute, and is masked like one.
func envName(toks hclsyntax.Tokens) bool {
	if len(toks) < 3 || toks[0].Type != hclsyntax.TokenOQuote || toks[1].Type != hclsyntax.TokenQuotedLit || toks[2].Type != hclsyntax.TokenCQuote {
		return false
	}
	return envNameRE.Match(toks[1].Bytes)
}

// valueEnd returns the index after the last token of the value that
// starts at toks[i]: the value ends before a newline or a closing brace
// outside any string, heredoc, template or bracket, or at EOF.
func valueEnd(toks hclsyntax.Tokens, i int) int {
	depth := 0
	for ; i < len(toks); i++ {
		switch toks[i].Type {
		case hclsyntax.TokenEOF:
			return i
		case hclsyntax.TokenComment:
			// A # or // comment holds its newline: the line ends there.
			// (Without this the value of `password = "x" # note` ran on
			// over the whole next line.)
			if depth <= 0 && bytes.HasSuffix(toks[i].Bytes, []byte("\n")) {
				return i
			}
		case hclsyntax.TokenNewline, hclsyntax.TokenCBrace:
			if depth <= 0 {
				return i
			}
			if toks[i].Type == hclsyntax.TokenCBrace {
				depth--
			}
		case hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc, hclsyntax.TokenOBrace, hclsyntax.TokenOBrack,
			hclsyntax.TokenOParen, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			depth++
		case hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenTemplateSeqEnd:
			depth--
		}
	}
	return i
}

func mergeSpans(in []span) []span {
	sort.Slice(in, func(i, j int) bool { return in[i].start < in[j].start })
	var out []span
	for _, s := range in {
		if s.end <= s.start {
			continue
		}
		if n := len(out); n > 0 && s.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, s.end)
			out[n-1].named = out[n-1].named || s.named
			continue
		}
		out = append(out, s)
	}
	return out
}

// maskedSource is src with every secret span replaced.
type maskedSource struct {
	text  []byte
	spans []span // in src
	toks  hclsyntax.Tokens
	moved []span // the same spans in text
	lines []int  // the offset in text where each line starts
}

// maskSource replaces each span's text with mask, line by line, so that
// line numbers stay as they were: a heredoc secret of three lines becomes
// three lines of "***".
func maskSource(src []byte) *maskedSource {
	m := &maskedSource{}
	m.spans, m.toks = secretSpans(src)
	var b bytes.Buffer
	prev := 0
	for _, s := range m.spans {
		b.Write(src[prev:s.start])
		start := b.Len()
		for k, part := range bytes.Split(src[s.start:s.end], []byte("\n")) {
			if k > 0 {
				b.WriteByte('\n')
			}
			if len(bytes.TrimRight(part, "\r")) > 0 {
				b.WriteString(mask)
			}
		}
		m.moved = append(m.moved, span{start, b.Len(), s.named})
		prev = s.end
	}
	b.Write(src[prev:])
	m.text = b.Bytes()
	m.lines = []int{0}
	for i, c := range m.text {
		if c == '\n' {
			m.lines = append(m.lines, i+1)
		}
	}
	return m
}

// offset maps a byte offset of src to text: inside a masked span, to the
// span's start.
func (m *maskedSource) offset(o int) int {
	// k is the number of spans that start at or before o.
	k := sort.Search(len(m.spans), func(i int) bool { return m.spans[i].start > o })
	if k == 0 {
		return o
	}
	if s := m.spans[k-1]; o < s.end {
		return m.moved[k-1].start
	}
	return o + m.moved[k-1].end - m.spans[k-1].end
}

// overlaps says whether rng touches a secret span.
func (m *maskedSource) overlaps(rng *hcl.Range) bool {
	if rng == nil {
		return false
	}
	s, ok := m.spanAfter(rng.Start.Byte)
	return ok && (s.start < rng.End.Byte || s.start <= rng.Start.Byte) // the latter: an empty range inside s
}

// spanAfter returns the first span that ends after byte o of src: the
// only one that can hold o or a range starting there, as spans are sorted
// and disjoint.
func (m *maskedSource) spanAfter(o int) (span, bool) {
	k := sort.Search(len(m.spans), func(i int) bool { return m.spans[i].end > o })
	if k == len(m.spans) {
		return span{}, false
	}
	return m.spans[k], true
}

var quoted = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`"(?:[^"\\]|\\.)*"`) })

// redactDiags removes from each diagnostic's summary and detail anything
// that may come from a secret in src: where the diagnostic points into a
// masked span, every quoted fragment that occurs in that span's text
// (HCL's "The symbol "q" is not a valid escape sequence", "There is no
// function named ..."); and everywhere, the whole text (4 bytes or more)
// of a secret-named attribute's value and of each string in it. (An
// unknown attribute's value is not removed everywhere: "sever" =
// "pop.example.com" must not blank out every example host name.)
func redactDiags(src []byte, diags hcl.Diagnostics) hcl.Diagnostics {
	if len(diags) == 0 {
		// A valid file, the common case: finding its secrets (the
		// lexer, the fallback's regexps) would cost every start of
		// popfetch about a millisecond for nothing.
		return diags
	}
	m := maskSource(src)
	if len(m.spans) == 0 {
		return diags
	}
	var secrets, named []string
	for _, s := range m.spans {
		v := strings.TrimSpace(string(src[s.start:s.end]))
		for _, l := range append(strings.Split(v, "\n"), v) {
			l = strings.TrimSpace(l)
			forms := []string{l}
			if u := strings.Trim(l, `"`); u != l {
				forms = append(forms, u)
			}
			secrets = append(secrets, forms...)
			if s.named {
				named = append(named, forms...)
			}
		}
	}
	// A string inside a secret's value goes too, wherever the message
	// shows it unquoted: `password = env("s")` is reported as
	// "environment variable s is not set".
	for _, tk := range m.toks {
		if tk.Type != hclsyntax.TokenQuotedLit {
			continue
		}
		if sp, ok := m.spanAfter(tk.Range.Start.Byte); ok && sp.named && sp.start <= tk.Range.Start.Byte {
			named = append(named, strings.TrimSpace(string(tk.Bytes)))
		}
	}
	scrub := func(text string, inSecret bool) string {
		if inSecret {
			text = quoted().ReplaceAllStringFunc(text, func(q string) string {
				inner := q[1 : len(q)-1]
				for _, s := range secrets {
					if inner != "" && strings.Contains(s, inner) {
						return `"` + mask + `"`
					}
				}
				return q
			})
		}
		for _, s := range named {
			if len(s) >= 4 {
				text = strings.ReplaceAll(text, s, mask)
			}
		}
		return text
	}
	for _, d := range diags {
		in := m.overlaps(d.Subject) || m.overlaps(d.Context)
		d.Summary = scrub(d.Summary, in)
		d.Detail = scrub(d.Detail, in)
	}
	return diags
}

// snippet returns source line n (1-based) of m's text and the column
// (in runes) and width of rng on it, for WriteDiagnostics' carets. ok is
// false if the line does not exist.
func (m *maskedSource) snippet(rng *hcl.Range) (line string, col, width int, ok bool) {
	n := rng.Start.Line - 1
	if n < 0 || n >= len(m.lines) {
		return "", 0, 0, false
	}
	lineStart, lineEnd := m.lines[n], len(m.text)
	if n+1 < len(m.lines) {
		lineEnd = m.lines[n+1] - 1
	}
	line = strings.TrimRight(string(m.text[lineStart:lineEnd]), "\r")
	if unmasked(line) {
		return hiddenLine, 0, 1, true
	}
	start, end := m.offset(rng.Start.Byte), m.offset(rng.End.Byte)
	if start >= lineStart && start <= lineStart+len(line) {
		col = utf8.RuneCount(m.text[lineStart:start])
	} else {
		// The byte offset is not on this line (a file changed since
		// it was parsed): fall back on the column.
		col = min(max(rng.Start.Column-1, 0), utf8.RuneCountInString(line))
		start = -1
	}
	width = 1
	if rng.End.Line == rng.Start.Line {
		if start >= 0 && end > start && end <= lineStart+len(line) {
			width = max(utf8.RuneCount(m.text[start:end]), 1)
		} else if start < 0 && rng.End.Column > rng.Start.Column {
			width = rng.End.Column - rng.Start.Column
		}
	}
	return line, col, width, true
}

// hiddenLine is shown instead of a source line that unmasked finds fault
// with.
const hiddenLine = "(source line not shown: it may hold a secret)"

// unmasked is the last line of defence for a snippet: it says whether
// line, already masked, still has a secret's name (as the fallback sees
// it) followed by anything but the mask, which the masking above missed
// somehow. Such a line is not printed.
func unmasked(line string) bool {
	folded, _ := fold([]byte(line))
	for _, l := range bytes.Split(folded, []byte("\n")) {
		for _, m := range secretName().FindAllIndex(l, -1) {
			n := secretNameEnd().FindIndex(l[m[0]:m[1]])
			rest := bytes.TrimSpace(l[m[0]+n[1] : m[1]])
			if len(rest) > 0 && !bytes.HasPrefix(rest, []byte(mask)) {
				return true
			}
		}
	}
	return false
}
