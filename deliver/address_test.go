package deliver

import (
	"os"
	"strings"
	"testing"
)

// FuzzAddressParsers is the differential property of the two address
// parsers: whenever go-message accepts a piece that has no quoted local
// part (parseMailboxGo used), the own parser reaches the same decision and
// the same address. A difference means one of them routes mail the other
// would not.
func FuzzAddressParsers(f *testing.F) {
	for _, c := range parseRouteCasesF(mustRead(f, routeCases)) {
		for _, h := range c.header {
			if _, v, ok := strings.Cut(unescape(h), ":"); ok {
				f.Add(v)
			}
		}
	}
	for _, s := range []string{
		"Joe Q. Public <joe@example.com>", "joe @ example.com", "joe@example.com.", "a.b.c@d.e.f",
		"=?utf-8?q?J=C3=B6rg?= <jörg@bücher.example>", "joe@[192.0.2.1]", "joe@[IPv6:2001:db8::1]",
		"<joe@example.com> trailing", "joe@xn--bcher-kva.example", "JOE+tag@EXAMPLE.COM", "joe..x@example.com",
		"joe.@example.com", "joe@-example.com", "joe@example..com", "a@b", "<a@b>", "x <a@b> <c@d>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		splitList(v, func(p string, bad bool) bool {
			p = trimWSP(p)
			for i := 0; i < len(p); i++ {
				if c := p[i]; c < 0x20 && c != '\t' || c == 0x7f {
					return true // parseMailbox rejects these before either parser
				}
			}
			if p == "" {
				return true
			}
			ga, gok, used := parseMailboxGo(p)
			if !used {
				return true
			}
			oa, ook := parseMailboxOwn(p)
			if gok != ook || gok && ga != oa {
				t.Errorf("piece %q: go-message path = %+v, %v; own parser = %+v, %v", p, ga, gok, oa, ook)
			}
			return true
		})
	})
}

func mustRead(f *testing.F, path string) string {
	f.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return string(b)
}
