package deliver

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var updateRoute = flag.Bool("update", false, "rewrite testdata/route/cases.txt with the current results")

const routeCases = "../testdata/route/cases.txt"

// fixtureUsers is the directory of the golden table (see the brief in
// testdata/route/cases.txt).
var fixtureUsers = map[string][]string{
	"alice": {"alice", "a.smith", "sales"},
	"bob":   {"bob", "postmaster-not!"},
	"carol": {"carol"},
}

func fixtureRules(t testing.TB, caseSensitive bool) *Rules {
	t.Helper()
	d := NewDirectory(fixtureUsers, caseSensitive)
	if err := d.LoadAliases("../testdata/route/aliases"); err != nil {
		t.Fatalf("LoadAliases = %v", err)
	}
	return &Rules{
		LocalDomains:    []string{"example.com", "example.org"},
		EnvelopeHeader:  "Delivered-To",
		EnvelopeCount:   1,
		ReceivedBy:      "mx.isp.example",
		FallbackHeaders: []string{"To", "Cc", "Resent-To", "Resent-Cc"},
		DetailDelimiter: "+",
		CaseSensitive:   caseSensitive,
		Directory:       d,
	}
}

// routeCase is one entry of cases.txt:
//
//	=== name
//	@directive value     (optional rule overrides, see applyDirective)
//	Header: lines        (LF in the file; sent as CRLF unless @lf)
//	--- want
//	rcpt USER ADDRESS DOMAIN
//	via ...
//	reason ...
//	unknown ADDRESS
//	loop
//
// Header lines may use \xNN escapes for NUL, CR and invalid UTF-8.
type routeCase struct {
	name       string
	directives []string
	header     []string
	want       []string
}

func parseRouteCases(t *testing.T, data string) []routeCase {
	t.Helper()
	var cases []routeCase
	var c *routeCase
	inWant := false
	for i, line := range strings.Split(data, "\n") {
		switch {
		case strings.HasPrefix(line, "=== "):
			cases = append(cases, routeCase{name: strings.TrimPrefix(line, "=== ")})
			c = &cases[len(cases)-1]
			inWant = false
		case c == nil:
			// File preamble (comments).
		case line == "--- want":
			inWant = true
		case inWant:
			if line != "" {
				c.want = append(c.want, line)
			}
		case strings.HasPrefix(line, "@") && len(c.header) == 0:
			c.directives = append(c.directives, line)
		case line == "" && len(c.header) == 0:
			// blank line between directives and header: ignored
		default:
			if line == "" {
				t.Fatalf("cases.txt:%d: blank line inside a header", i+1)
			}
			c.header = append(c.header, line)
		}
	}
	return cases
}

// unescape replaces \xNN by the byte NN.
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (c routeCase) build(t *testing.T) ([]byte, *Rules) {
	t.Helper()
	cs := false
	for _, d := range c.directives {
		if d == "@casesensitive" {
			cs = true
		}
	}
	r := fixtureRules(t, cs)
	eol := "\r\n"
	for _, d := range c.directives {
		key, val, _ := strings.Cut(d, " ")
		switch key {
		case "@envelope":
			r.EnvelopeHeader = val
		case "@count":
			r.EnvelopeCount, _ = strconv.Atoi(val)
		case "@by":
			r.ReceivedBy = val
		case "@fallback":
			r.FallbackHeaders = nil
			if val != "" {
				r.FallbackHeaders = strings.Split(val, ",")
			}
		case "@delimiter":
			r.DetailDelimiter = val
		case "@casesensitive":
		case "@qvirtual":
			r.QVirtual = val
		case "@domains":
			r.LocalDomains = strings.Split(val, ",")
		case "@max":
			r.MaxRecipients, _ = strconv.Atoi(val)
		case "@lf":
			eol = "\n"
		default:
			t.Fatalf("case %s: unknown directive %q", c.name, d)
		}
	}
	var b bytes.Buffer
	for _, h := range c.header {
		b.WriteString(unescape(h))
		b.WriteString(eol)
	}
	b.WriteString(eol)
	b.WriteString("Body text." + eol + "To: carol@example.com" + eol)
	return b.Bytes(), r
}

// describe renders a Route as the golden "want" lines.
func describe(rt Route) []string {
	var out []string
	for _, r := range rt.Rcpts {
		out = append(out, fmt.Sprintf("rcpt %s %s %s", r.User, r.Address, r.Domain))
	}
	if rt.Via != "" {
		out = append(out, "via "+rt.Via)
	}
	if rt.Reason != "" {
		out = append(out, "reason "+rt.Reason)
	}
	for _, u := range rt.Unknown {
		out = append(out, "unknown "+u)
	}
	if rt.Loop {
		out = append(out, "loop")
	}
	return out
}

// TestRouteGolden runs the routing table in testdata/route/cases.txt.
// Run with -update to rewrite the want sections, then review the diff.
func TestRouteGolden(t *testing.T) {
	data, err := os.ReadFile(routeCases)
	if err != nil {
		t.Fatal(err)
	}
	cases := parseRouteCases(t, string(data))
	if len(cases) < 40 {
		t.Errorf("only %d golden cases; want at least 40", len(cases))
	}
	seen := map[string]bool{}
	for i := range cases {
		c := &cases[i]
		if seen[c.name] {
			t.Errorf("duplicate case name %q", c.name)
		}
		seen[c.name] = true
		raw, rules := c.build(t)
		got := describe(RouteHeader(raw, rules))
		if *updateRoute {
			c.want = got
			continue
		}
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("case %s:\ngot:\n\t%s\nwant:\n\t%s", c.name, strings.Join(got, "\n\t"), strings.Join(c.want, "\n\t"))
		}
		checkRouteInvariants(t, c.name, RouteHeader(raw, rules), rules)
	}
	if *updateRoute {
		writeRouteCases(t, string(data), cases)
	}
}

// writeRouteCases rewrites the want sections, keeping the preamble and the
// inputs as they are.
func writeRouteCases(t *testing.T, data string, cases []routeCase) {
	t.Helper()
	pre, _, _ := strings.Cut(data, "\n=== ")
	var b strings.Builder
	b.WriteString(pre)
	b.WriteString("\n")
	for _, c := range cases {
		b.WriteString("\n=== " + c.name + "\n")
		for _, d := range c.directives {
			b.WriteString(d + "\n")
		}
		for _, h := range c.header {
			b.WriteString(h + "\n")
		}
		b.WriteString("--- want\n")
		for _, w := range c.want {
			b.WriteString(w + "\n")
		}
	}
	if err := os.WriteFile(filepath.Clean(routeCases), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkRouteInvariants are the properties every Route must have (also
// checked by FuzzRouteHeader).
func checkRouteInvariants(t testing.TB, name string, rt Route, r *Rules) {
	t.Helper()
	if len(rt.Rcpts) == 0 && rt.Reason == "" {
		t.Errorf("%s: no recipients and no reason (silent drop)", name)
	}
	if rt.Loop && len(rt.Rcpts) > 0 {
		t.Errorf("%s: Loop set with recipients", name)
	}
	users := map[string]bool{}
	for _, rc := range rt.Rcpts {
		if _, ok := fixtureUsers[rc.User]; !ok && r.Directory != nil && !r.Directory.users[rc.User] {
			t.Errorf("%s: recipient user %q is not configured", name, rc.User)
		}
		if users[rc.User] {
			t.Errorf("%s: user %q twice", name, rc.User)
		}
		users[rc.User] = true
		for _, f := range []string{rc.User, rc.Address, rc.Domain} {
			if f == "" || hasUnsafe(f) {
				t.Errorf("%s: unsafe or empty recipient field %q", name, f)
			}
		}
	}
	for _, s := range append([]string{rt.Reason, rt.Via}, rt.Unknown...) {
		for _, c := range s {
			if unicode.IsControl(c) {
				t.Errorf("%s: control character in %q", name, s)
			}
		}
	}
}
