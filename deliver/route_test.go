package deliver

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

var updateRoute = flag.Bool("update-route", false, "rewrite testdata/route/cases.txt with the current results")

const routeCases = "../testdata/route/cases.txt"

// fixtureUsers is the directory of the golden table (see the brief in
// testdata/route/cases.txt).
var fixtureUsers = map[string][]string{
	"alice": {"alice", "a.smith", "sales"},
	"bob":   {"bob", "postmaster-not!"},
	"carol": {"carol"},
}

// fixtureLearnedAddrs and fixtureLearnedListIDs are the learned routes of
// the golden table (see the brief in testdata/route/cases.txt): a learned
// local address, two outside the local domains, one that a configured
// address overrides, one to an unknown user and an invalid one (both
// ignored at load).
var (
	fixtureLearnedAddrs = map[string]string{
		"erin@example.com":           "carol",
		"old.bob@old.example.net":    "bob",
		"announce@lists.example.net": "alice",
		"carol@example.com":          "bob",
		"ghost@example.com":          "mallory",
		"bad@":                       "alice",
	}
	fixtureLearnedListIDs = map[string]string{"news.lists.example.net": "carol"}
)

func fixtureRules(t testing.TB, caseSensitive bool) *Rules {
	t.Helper()
	d := NewDirectory(fixtureUsers, caseSensitive)
	if err := d.LoadAliases("../testdata/route/aliases"); err != nil {
		t.Fatalf("LoadAliases = %v", err)
	}
	d.SetLearned(fixtureLearnedAddrs, fixtureLearnedListIDs)
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
		case "@ignore":
			r.EnvelopeIgnore = strings.Split(val, ",")
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
// Run with -update-route to rewrite the want sections, then review the diff.
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
	b.WriteString(strings.TrimRight(pre, "\n"))
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
	if len(rt.Rcpts) > MaxRoutedUsers {
		t.Errorf("%s: %d recipients; at most MaxRoutedUsers (%d)", name, len(rt.Rcpts), MaxRoutedUsers)
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

// TestRouteHostile feeds the hostile inputs of fetchmail's and Go's
// security history (CVE-2002-1365, CVE-2002-1174, the Go address-parser
// DoS CVEs: huge headers, many recipients, deep nesting) and checks the
// results.
// Timing is left to BenchmarkRouteHostile; every input here is at most a
// few MiB, so a quadratic parser would still show as a very slow test.
func TestRouteHostile(t *testing.T) {
	many := func(n int, f func(i int) string) string {
		l := make([]string, n)
		for i := range l {
			l[i] = f(i)
		}
		return strings.Join(l, ", ")
	}
	bigReceived := strings.Repeat("Received: from a.test by b.test with ESMTP id 1; Tue, 1 Jan 2030 00:00:00 +0000\r\n", (MaxHeaderBytes/80)+100)
	tests := []struct {
		name     string
		header   string
		max      int
		wantRcpt []string // users
		reason   string   // substring of Reason; "" = Reason must be empty
		unknown  int      // len(Unknown), -1 = don't check
	}{
		{
			name: "500 recipients",
			header: "To: " + many(497, func(i int) string { return fmt.Sprintf("u%d@example.com", i) }) +
				", carol@example.com, ALICE@example.org, bob+x@example.com\r\n",
			wantRcpt: []string{"carol", "alice", "bob"},
			reason:   "unknown user u0@example.com, u1@example.com, u2@example.com, u3@example.com, u4@example.com (and 492 more)",
			unknown:  497,
		},
		{
			name:     "1 MiB header, recipient above the cut",
			header:   "To: alice@example.com\r\n" + bigReceived + "Cc: bob@example.com\r\n",
			wantRcpt: []string{"alice"},
			reason:   "header truncated at 1 MiB",
			unknown:  0,
		},
		{
			name:    "1 MiB header, recipient below the cut",
			header:  bigReceived + "To: alice@example.com\r\n",
			reason:  "no local recipient found (no Delivered-To header above the first Received; no To/Cc/Resent-To/Resent-Cc header); header truncated at 1 MiB",
			unknown: 0,
		},
		{
			name:    "1 MiB single To line",
			header:  "To: " + many(MaxHeaderBytes/10, func(int) string { return "x@elsewhere.test" }) + "\r\n",
			reason:  "no headers (header section larger than 1 MiB)",
			unknown: 0,
		},
		{
			name:    "10^5 recipients capped",
			header:  "To: " + many(100000, func(i int) string { return "x@e.tt" }) + ", alice@example.com\r\n",
			reason:  "no local recipient found (no Delivered-To header); recipient cap reached after 1000 addresses",
			unknown: 0,
		},
		{
			name:     "10^5 recipients capped, partial route",
			header:   "To: bob@example.com, " + many(100000, func(i int) string { return "x@e.tt" }) + "\r\n",
			max:      50,
			wantRcpt: []string{"bob"},
			reason:   "recipient cap reached after 50 addresses",
			unknown:  0,
		},
		{
			name:     "invalid UTF-8 everywhere",
			header:   "To: \xff\xfe\xfd <\xc3\x41@example.com>, carol@example.com, alice@\xe2\x82example.com\r\nCc: \xf0\x28\x8c\x28\r\n",
			wantRcpt: []string{"carol"},
			reason:   "unparseable",
			unknown:  0,
		},
		{
			name:     "NUL bytes",
			header:   "To: alice@example.com\x00, bob@exa\x00mple.com, carol@example.com\r\nCc\x00: bob@example.com\r\n",
			wantRcpt: []string{"carol"},
			reason:   "unparseable",
			unknown:  0,
		},
		{
			name:     "deeply nested comments",
			header:   "To: alice@example.com, " + strings.Repeat("(", 500000) + "bob@example.com\r\n",
			wantRcpt: []string{"alice"},
			reason:   "unterminated comment",
			unknown:  0,
		},
		{
			name:     "balanced deep comments",
			header:   "To: " + strings.Repeat("(", 200000) + strings.Repeat(")", 200000) + "carol@example.com\r\n",
			wantRcpt: []string{"carol"},
			unknown:  0,
		},
		{
			name:     "100k-character address",
			header:   "To: " + strings.Repeat("a", 100000) + "@example.com, bob@example.com\r\n",
			wantRcpt: []string{"bob"},
			reason:   `unparseable To: "aaaa`,
			unknown:  0,
		},
		{
			name:     "100k-character domain",
			header:   "To: alice@" + strings.Repeat("a.", 50000) + "example.com, bob@example.com\r\n",
			wantRcpt: []string{"bob"},
			reason:   "unparseable",
			unknown:  0,
		},
		{
			name:     "many quotes, angles, colons and ats",
			header:   "To: " + strings.Repeat(`"<:@;`, 100000) + "\r\nCc: carol@example.com\r\n",
			wantRcpt: []string{"carol"},
			reason:   "unparseable",
			unknown:  -1,
		},
		{
			name:     "many groups",
			header:   "To: " + strings.Repeat("g: alice@example.com;", 20000) + "\r\n",
			wantRcpt: []string{"alice"},
			reason:   "recipient cap reached",
			unknown:  0,
		},
		{
			name:     "many folded lines",
			header:   "To: alice@example.com" + strings.Repeat(",\r\n x@e.test", 900) + "\r\n",
			wantRcpt: []string{"alice"},
			unknown:  0,
		},
		{
			name:     "many envelope lines",
			header:   strings.Repeat("Delivered-To: bob@example.com\r\n", 20000) + "To: alice@example.com\r\n",
			wantRcpt: []string{"bob"},
			unknown:  0,
		},
		{
			name:     "many Delivered-To loop markers",
			header:   "Received: from a by b; x\r\n" + strings.Repeat("Delivered-To: u@e.test\r\n", 30000) + "To: alice@example.com\r\n",
			wantRcpt: []string{"alice"},
			unknown:  0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := fixtureRules(t, false)
			r.MaxRecipients = tc.max
			raw := []byte(tc.header + "\r\nbody\r\n")
			got := RouteHeader(raw, r)
			checkRouteInvariants(t, tc.name, got, r)
			var users []string
			for _, rc := range got.Rcpts {
				users = append(users, rc.User)
			}
			if strings.Join(users, ",") != strings.Join(tc.wantRcpt, ",") {
				t.Errorf("users = %v; want %v (reason %q)", users, tc.wantRcpt, got.Reason)
			}
			if tc.reason == "" && got.Reason != "" {
				t.Errorf("Reason = %q; want none", got.Reason)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("Reason = %q; want it to contain %q", got.Reason, tc.reason)
			}
			if len(got.Reason) > 2000 {
				t.Errorf("len(Reason) = %d; want a bounded reason", len(got.Reason))
			}
			if tc.unknown >= 0 && len(got.Unknown) != tc.unknown {
				t.Errorf("len(Unknown) = %d; want %d", len(got.Unknown), tc.unknown)
			}
		})
	}
}

// TestRouteNilAndEmpty covers degenerate inputs the glue might pass.
func TestRouteNilAndEmpty(t *testing.T) {
	for _, raw := range [][]byte{nil, {}, []byte("\r\n"), []byte("\n\nTo: alice@example.com\n")} {
		got := RouteHeader(raw, fixtureRules(t, false))
		if len(got.Rcpts) != 0 || got.Reason != "no headers" {
			t.Errorf("RouteHeader(%q) = %+v; want no recipients, reason \"no headers\"", raw, got)
		}
	}
	got := RouteHeader([]byte("To: alice@example.com\r\n\r\n"), nil)
	if len(got.Rcpts) != 0 || got.Reason == "" {
		t.Errorf("RouteHeader with nil rules = %+v; want postmaster with a reason", got)
	}
	r := fixtureRules(t, false)
	r.Directory = nil
	got = RouteHeader([]byte("To: alice@example.com\r\n\r\n"), r)
	if len(got.Rcpts) != 0 || !strings.Contains(got.Reason, "unknown user alice@example.com") {
		t.Errorf("RouteHeader with nil Directory = %+v; want unknown user", got)
	}
}

// TestRouteDoesNotMutateInput: the raw message is the spool; routing must
// not write to it.
func TestRouteDoesNotMutateInput(t *testing.T) {
	raw := []byte("Delivered-To: alice@example.com\r\nTo: Bob <bob@example.com>, (c) carol@example.com\r\n\r\nbody\r\n")
	orig := append([]byte(nil), raw...)
	RouteHeader(raw, fixtureRules(t, false))
	MessageID(raw)
	if !bytes.Equal(raw, orig) {
		t.Errorf("RouteHeader modified its input")
	}
}

// TestRouteUserCap: an alias reaching more users than the UIDL store can
// record per message gives a partial route capped at MaxRoutedUsers; the
// rest are named in Reason (for the postmaster copy), none is dropped
// silently and none is routed twice.
func TestRouteUserCap(t *testing.T) {
	const n = MaxRoutedUsers + 100
	users := map[string][]string{}
	var names []string
	for i := range n {
		u := fmt.Sprintf("u%03d", i)
		users[u] = []string{u}
		names = append(names, u)
	}
	aliases := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(aliases, []byte("everyone: "+strings.Join(names, ", ")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := NewDirectory(users, false)
	if err := d.LoadAliases(aliases); err != nil {
		t.Fatal(err)
	}
	r := &Rules{LocalDomains: []string{"example.com"}, FallbackHeaders: []string{"To"}, Directory: d}
	for _, hdr := range []string{
		"To: everyone@example.com\r\n",
		"To: " + strings.Join(names, "@example.com, ") + "@example.com\r\n",
		"To: u000@example.com, everyone@example.com\r\n", // u000 counted once
	} {
		got := RouteHeader([]byte(hdr+"\r\nbody\r\n"), r)
		checkRouteInvariants(t, "user cap", got, r)
		if len(got.Rcpts) != MaxRoutedUsers || !got.Partial() {
			t.Fatalf("RouteHeader(%.40q...) = %d recipients, partial %v; want %d, partial", hdr, len(got.Rcpts), got.Partial(), MaxRoutedUsers)
		}
		want := fmt.Sprintf("more than %d users: not routed to u%03d, ", MaxRoutedUsers, MaxRoutedUsers)
		if !strings.HasPrefix(got.Reason, want) || !strings.HasSuffix(got.Reason, "(and 95 more)") {
			t.Errorf("Reason = %q; want %q... (and 95 more)", got.Reason, want)
		}
		if got.Rcpts[0].User != "u000" || got.Rcpts[MaxRoutedUsers-1].User != fmt.Sprintf("u%03d", MaxRoutedUsers-1) {
			t.Errorf("recipients %s..%s; want the first %d in order", got.Rcpts[0].User, got.Rcpts[len(got.Rcpts)-1].User, MaxRoutedUsers)
		}
	}
}

// TestRouteLoopOfOwnMaildirCopy routes what popfetch's Maildir target
// really wrote: a copy that comes back (a user's forward to the domain)
// is a loop for that user, and for no one else. This ties
// collectLoopMarkers to the order maildir.go writes Received and
// Delivered-To in.
func TestRouteLoopOfOwnMaildirCopy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	md := NewMaildir(dir, MaildirOptions{LocalHost: "host.example.com"})
	orig := "Delivered-To: alice@example.com\r\nReceived: from a.test by mx.isp.example; Tue, 1 Jan 2030 00:00:00 +0000\r\n" +
		"To: alice@example.com, bob@example.com\r\nSubject: x\r\n\r\nbody\r\n"
	m := &Message{Account: "example.com", Server: "pop.isp.example", User: "catchall", UID: "17", Raw: []byte(orig)}
	rc := Recipient{User: "alice", Address: "alice@example.com", Domain: "example.com"}
	if errs := md.Deliver(context.Background(), m, "", []Recipient{rc}, nil); errs[0] != nil {
		t.Fatal(errs[0])
	}
	msgs := delivertest.MaildirMessages(t, dir, "new")
	if len(msgs) != 1 {
		t.Fatalf("new/ holds %d messages; want 1", len(msgs))
	}
	stored := msgs[0]
	// The copy is forwarded back to the domain: the provider stamps it
	// again on top.
	back := append([]byte("Delivered-To: alice@example.com\nReceived: from host.example.com by mx.isp.example; Tue, 1 Jan 2030 00:01:00 +0000\n"), stored...)
	got := RouteHeader(back, fixtureRules(t, false))
	if !got.Loop || len(got.Rcpts) != 0 || got.Reason != "mail loop: already delivered to alice@example.com" {
		t.Errorf("returned copy for alice: %+v; want a loop", got)
	}
	// The same copy forwarded to bob is not a loop for bob.
	back = append([]byte("Delivered-To: bob@example.com\nReceived: from host.example.com by mx.isp.example; Tue, 1 Jan 2030 00:01:00 +0000\n"), stored...)
	got = RouteHeader(back, fixtureRules(t, false))
	if got.Loop || len(got.Rcpts) != 1 || got.Rcpts[0].User != "bob" || got.Reason != "" {
		t.Errorf("copy forwarded to bob: %+v; want bob, no loop", got)
	}
	// Three trips through popfetch without any Delivered-To (an SMTP
	// target) are a loop too; two are not.
	hop := "Received: " + Received(m, "host.example.com", "").Value + "\r\n"
	for n, wantLoop := range map[int]bool{2: false, MaxPopfetchHops: true} {
		raw := "Delivered-To: bob@example.com\r\n" + strings.Repeat(hop, n) + "To: bob@example.com\r\n\r\nbody\r\n"
		got := RouteHeader([]byte(raw), fixtureRules(t, false))
		if got.Loop != wantLoop {
			t.Errorf("%d popfetch Received fields: %+v; want loop %v", n, got, wantLoop)
		}
	}
}

func TestIsPopfetchReceived(t *testing.T) {
	m := &Message{Server: "pop.isp.example", Account: "a", User: "u", UID: "1"}
	tests := []struct {
		v    string
		want bool
	}{
		{Received(m, "host", "joe@example.com").Value, true},
		{Received(m, "host", "").Value, true},
		{"from x by y with POP3 (popfetch 1.0); date", true},
		{"from x by y with\r\n\tPOP3\r\n (popfetch); date", true},
		{"from x (popfetch) by y with POP3 (popfetch 2); date", true},
		{"from x by y with POP3 (fetchmail-6.4); date", false},
		{"from x by y with SMTP (popfetch 1); date", false},
		{"from x by y withPOP3 (popfetch 1); date", false},
		{"from x by y with xPOP3 (popfetch 1); date", false},
		{"from x by y with POP3; (popfetch) date", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := isPopfetchReceived(tc.v); got != tc.want {
			t.Errorf("isPopfetchReceived(%q) = %v; want %v", tc.v, got, tc.want)
		}
	}
}

func routeSeeds(f *testing.F) {
	data, err := os.ReadFile(routeCases)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range parseRouteCasesF(string(data)) {
		var b strings.Builder
		for _, h := range c.header {
			b.WriteString(unescape(h) + "\r\n")
		}
		b.WriteString("\r\nbody\r\n")
		f.Add([]byte(b.String()))
	}
	f.Add([]byte("To: " + strings.Repeat("(", 100) + "\r\n\r\n"))
	f.Add([]byte("Received: from a by mx.isp.example for <alice@example.com>; x\r\nDelivered-To: bob@example.com\r\n\r\n"))
}

// parseRouteCasesF is parseRouteCases without a *testing.T (for seeds).
func parseRouteCasesF(data string) []routeCase {
	var cases []routeCase
	var c *routeCase
	inWant := false
	for _, line := range strings.Split(data, "\n") {
		switch {
		case strings.HasPrefix(line, "=== "):
			cases = append(cases, routeCase{name: line[4:]})
			c = &cases[len(cases)-1]
			inWant = false
		case c == nil || inWant:
		case line == "--- want":
			inWant = true
		case strings.HasPrefix(line, "@") && len(c.header) == 0:
		case line != "":
			c.header = append(c.header, line)
		}
	}
	return cases
}

// FuzzRouteHeader: never panics; every recipient is a configured user with
// safe fields; no recipients always comes with a reason. Each input runs
// under the fixture rules with the envelope taken from Delivered-To and,
// separately, from Received, so both envelope parsers are fuzzed.
func FuzzRouteHeader(f *testing.F) {
	routeSeeds(f)
	base := fixtureRules(f, false)
	recv := fixtureRules(f, false)
	recv.EnvelopeHeader = "Received"
	recv.QVirtual = "example-com-"
	recv.FallbackHeaders = append(recv.FallbackHeaders, "Apparently-To")
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, r := range []*Rules{base, recv} {
			got := RouteHeader(raw, r)
			checkRouteInvariants(t, "fuzz", got, r)
		}
		if id := MessageID(raw); id != "" && hasUnsafe(id) {
			t.Errorf("MessageID = %q; unsafe", id)
		}
	})
}

// typicalHeader is a realistic multidrop message header: the provider's
// envelope stamp, a few Received lines, a list-ish To/Cc.
const typicalHeader = "Return-Path: <sender@lists.example.net>\r\n" +
	"Delivered-To: catchall@isp.example\r\n" +
	"Received: from mx.isp.example (mx.isp.example [192.0.2.1])\r\n\tby store.isp.example (Postfix) with LMTP id 4F1\r\n\tfor <catchall@isp.example>; Tue, 1 Jan 2030 00:00:02 +0000\r\n" +
	"Received: from out.lists.example.net (out.lists.example.net [198.51.100.7])\r\n\tby mx.isp.example (Postfix) with ESMTPS id 9A2\r\n\tfor <alice@example.com>; Tue, 1 Jan 2030 00:00:01 +0000\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; d=lists.example.net; s=s1; h=from:to:cc:subject; bh=abc; b=def\r\n" +
	"From: \"Sender, Some\" <sender@lists.example.net>\r\n" +
	"To: \"Alice Smith\" <alice@example.com>, Bob (work) <bob+lists@example.com>,\r\n\tteam@example.com, someone@elsewhere.test\r\n" +
	"Cc: Team: carol@example.org, dave@example.com;, info@example.com\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Message-ID: <20300101000000.1234@lists.example.net>\r\n" +
	"Date: Tue, 1 Jan 2030 00:00:00 +0000\r\n" +
	"\r\nbody\r\n"

// BenchmarkRouteTypical: go test -run '^$' -bench 'Route' -benchmem ./deliver/
func BenchmarkRouteTypical(b *testing.B) {
	r := fixtureRules(b, false)
	raw := []byte(typicalHeader)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if got := RouteHeader(raw, r); len(got.Rcpts) != 3 {
			b.Fatalf("RouteHeader = %+v", got)
		}
	}
}

// BenchmarkRouteHostile runs 1 MiB-class hostile headers at two sizes; the
// ns/op must grow linearly (×4 input ≈ ×4 time), not quadratically.
func BenchmarkRouteHostile(b *testing.B) {
	kinds := map[string]func(n int) string{
		"addresses": func(n int) string {
			return "To: " + strings.Repeat("u@example.com, ", n/15) + "\r\n"
		},
		"comments": func(n int) string { return "To: " + strings.Repeat("(", n) + "\r\n" },
		"quotes":   func(n int) string { return "To: " + strings.Repeat(`"<:@;`, n/5) + "\r\n" },
		"folded":   func(n int) string { return "To: a@e.test" + strings.Repeat(",\r\n x@e.test", n/12) + "\r\n" },
		"fields":   func(n int) string { return strings.Repeat("Delivered-To: u@e.test\r\n", n/24) },
	}
	// What a hostile 1 MiB To: costs with the default recipient cap.
	b.Run("addresses-default-cap/1000KiB", func(b *testing.B) {
		r := fixtureRules(b, false)
		raw := []byte(kinds["addresses"](1000<<10) + "\r\nbody\r\n")
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			RouteHeader(raw, r)
		}
	})
	for _, name := range []string{"addresses", "comments", "quotes", "folded", "fields"} {
		for _, size := range []int{256 << 10, 1000 << 10} {
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				r := fixtureRules(b, false)
				r.MaxRecipients = 1 << 30 // measure the parser, not the cap
				raw := []byte("Received: from a by b; x\r\n" + kinds[name](size) + "\r\nbody\r\n")
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					RouteHeader(raw, r)
				}
			})
		}
	}
}
