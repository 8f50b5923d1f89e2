package pop3

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/popfetch/popfetch/internal/logsafe"
	"github.com/popfetch/popfetch/uidl"
)

func TestValidUID(t *testing.T) {
	tests := []struct {
		uid  string
		want bool
	}{
		{"a", true},
		{"00000001000000ab", true},
		{strings.Repeat("x", 70), true},
		{strings.Repeat("x", 71), false},
		{"", false},
		{"a b", false},
		{"a\x00b", false},
		{"tab\there", false},
		{"del\x7f", false},
		{"ü", false},
		{"!~", true},
	}
	for _, tt := range tests {
		// The journal's rule (uidl.ValidUID) is the one a listing is
		// held to.
		if got := uidl.ValidUID(tt.uid); got != tt.want {
			t.Errorf("uidl.ValidUID(%q) = %v; want %v", tt.uid, got, tt.want)
		}
		_, err := parseListing([]byte("1 "+tt.uid+"\r\n"), 1, true, quote)
		if got := err == nil; got != tt.want {
			t.Errorf("parseListing of UID %q: %v; want valid %v", tt.uid, err, tt.want)
		}
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		in      string
		count   int
		size    int64
		wantErr bool
	}{
		{"2 320", 2, 320, false},
		{"0 0", 0, 0, false},
		{"2 320 extra words", 2, 320, false},
		{"", 0, 0, true},
		{"2", 0, 0, true},
		{"-1 5", 0, 0, true},
		{"x 5", 0, 0, true},
		{"99999999999 5", 0, 0, true}, // don't trust the message count
		{"2000000 5", 0, 0, true},
	}
	for _, tt := range tests {
		c, s, err := parseStat([]byte(tt.in), quote)
		if (err != nil) != tt.wantErr || c != tt.count || s != tt.size {
			t.Errorf("parseStat(%q) = %d, %d, %v; want %d, %d, err=%v", tt.in, c, s, err, tt.count, tt.size, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("parseStat(%q) error %v is not ErrProtocol", tt.in, err)
		}
	}
}

func TestParseListing(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		count   int
		uidl    bool
		want    []Entry
		wantErr string
	}{
		{"uidl", "1 abc\r\n2 def\r\n", 2, true, []Entry{{Num: 1, UID: "abc"}, {Num: 2, UID: "def"}}, ""},
		{"list", "1 120\r\n2 300\r\n", 2, false, []Entry{{Num: 1, Size: 120}, {Num: 2, Size: 300}}, ""},
		{"list extra fields", "1 120 x y\r\n2 300 \r\n", 2, false, []Entry{{Num: 1, Size: 120}, {Num: 2, Size: 300}}, ""}, // RFC 1939 §5
		{"fewer than stat", "2 def\r\n", 3, true, nil, "lists 1 of STAT's 3"},                                             // message 1 and 3 would never be fetched
		{"list fewer than stat", "1 120\r\n", 2, false, nil, "lists 1 of STAT's 2"},
		{"bare lf", "1 abc\n", 1, true, []Entry{{Num: 1, UID: "abc"}}, ""},
		{"dup uid", "1 a\r\n2 a\r\n", 2, true, []Entry{{Num: 1, UID: "a"}, {Num: 2, UID: "a"}}, ""},
		{"empty", "", 0, true, nil, ""},
		{"zero", "0 abc\r\n", 1, true, nil, "out of range"},
		{"negative", "-1 abc\r\n", 1, true, nil, "out of range"},                           // CVE-2001-1009
		{"beyond stat", "5 abc\r\n", 2, true, nil, "out of range"},                         // never index by a server number
		{"dup num", "1 a\r\n1 b\r\n", 2, true, nil, "listed twice"},                        //
		{"long uid", "1 " + strings.Repeat("u", 71) + "\r\n", 1, true, nil, "invalid UID"}, // CVE-2005-2335
		{"no uid", "1\r\n", 1, true, nil, "malformed"},
		{"three fields", "1 a b\r\n", 1, true, nil, "malformed"},
		{"list one field", "1\r\n", 1, false, nil, "malformed"},
		{"more than stat", "1 a\r\n2 b\r\n", 1, true, nil, "more lines"},
		{"bad size", "1 12x\r\n", 1, false, nil, "malformed size"},
		{"negative size", "1 -5\r\n", 1, false, nil, "malformed size"},
		{"control char uid", "1 a\x01b\r\n", 1, true, nil, "malformed"}, // \x01 is not a field separator, but invalid
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseListing([]byte(tt.body), tt.count, tt.uidl, quote)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) && !strings.Contains(err.Error(), "invalid UID") {
					t.Fatalf("parseListing(%q) err = %v; want %q", tt.body, err, tt.wantErr)
				}
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("error %v is not ErrProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseListing(%q): %v", tt.body, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parseListing(%q) = %v; want %v", tt.body, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("parseListing(%q)[%d] = %v; want %v", tt.body, i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseCapa(t *testing.T) {
	c := parseCapa([]byte("TOP\r\nUSER\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\nSTLS\r\nEXPIRE 0\r\nLOGIN-DELAY 900\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION \x1b[31mevil\r\n"))
	if !c.stls || !c.user || !c.uidl || !c.pipelining || !c.respCodes || !c.expire0 || c.loginDelay != 900 || len(c.sasl) != 2 {
		t.Fatalf("parseCapa = %+v", c)
	}
	if strings.ContainsRune(c.impl, 0x1b) {
		t.Fatalf("IMPLEMENTATION not sanitized: %q", c.impl)
	}
	if c := parseCapa([]byte("EXPIRE 30\r\nLOGIN-DELAY -5\r\n")); c.expire0 || c.loginDelay != 0 {
		t.Fatalf("parseCapa = %+v", c)
	}
	// A per-user value ("USER" after it) is read like any other: the
	// CAPA after login says what applies.
	for in, want := range map[string]capabilities{
		"LOGIN-DELAY 900 USER": {known: true, loginDelay: 900},
		"EXPIRE 0 user":        {known: true, expire0: true},
		"EXPIRE NEVER USER":    {known: true},
	} {
		if c := parseCapa([]byte(in)); c.loginDelay != want.loginDelay || c.expire0 != want.expire0 {
			t.Errorf("parseCapa(%q) = %+v; want %+v", in, c, want)
		}
	}
}

// Every spelling of EXPIRE that servers send; what popfetch cannot read is
// taken as EXPIRE 0, the reading that loses nothing.
func TestParseCapaExpire(t *testing.T) {
	for _, tt := range []struct {
		capa    string
		expire0 bool
	}{
		{"EXPIRE 0", true},
		{"EXPIRE0", true}, // GNU mailutils pop3d
		{"expire0", true},
		{"EXPIRE 00", true},
		{"EXPIRE 0 USER", true},
		{"EXPIRE0 USER", true},
		{"EXPIRE NEVER", false},
		{"EXPIRENEVER", false}, // GNU mailutils pop3d
		{"EXPIRE never", false},
		{"EXPIRE NEVER USER", false},
		{"EXPIRENEVER USER", false},
		{"EXPIRE 30", false},
		{"EXPIRE30", false},
		{"EXPIRE 30 USER", false},
		{"EXPIRE 99999999999999999999999", false},
		// In doubt: may delete.
		{"EXPIRE", true},
		{"EXPIRE -1", true},
		{"EXPIRE +5", true},
		{"EXPIRE soon", true},
		{"EXPIRE 1.5", true},
		{"EXPIRE USER", true},
		{"EXPIRE-NEVER", true},
		// The side that loses nothing wins.
		{"EXPIRE NEVER\r\nEXPIRE 0", true},
		{"EXPIRE 0\r\nEXPIRE NEVER", true},
		{"USER\r\nUIDL", false},
	} {
		c := parseCapa([]byte(tt.capa + "\r\n"))
		if c.expire0 != tt.expire0 {
			t.Errorf("parseCapa(%q): expire0 %v; want %v", tt.capa, c.expire0, tt.expire0)
		}
	}
}

func TestRespCode(t *testing.T) {
	for in, want := range map[string]string{
		"[IN-USE] locked":                    "IN-USE",
		"[auth] bad":                         "AUTH",
		"[SYS/TEMP] try later":               "SYS/TEMP",
		"no code":                            "",
		"[unterminated":                      "",
		"[" + strings.Repeat("x", 100) + "]": "",
	} {
		if got := respCode(in); got != want {
			t.Errorf("respCode(%q) = %q; want %q", in, got, want)
		}
	}
}

func FuzzParseListing(f *testing.F) {
	f.Add([]byte("1 abc\r\n2 def\r\n"), 2, true)
	f.Add([]byte("1 120\r\n2 300\r\n"), 2, false)
	f.Add([]byte("-1 x\r\n0 y\r\n99999999999999999999 z\r\n"), 3, true)
	f.Add([]byte("1 "+strings.Repeat("u", 200)+"\r\n"), 1, true)
	f.Fuzz(func(t *testing.T, body []byte, count int, byUID bool) {
		if count < 0 || count > maxMessages {
			return
		}
		got, err := parseListing(body, count, byUID, quote)
		if err != nil {
			return
		}
		if len(got) != count {
			t.Fatalf("%d entries for count %d", len(got), count)
		}
		nums := map[int]bool{}
		for _, e := range got {
			if e.Num < 1 || e.Num > count || nums[e.Num] {
				t.Fatalf("bad entry %+v", e)
			}
			nums[e.Num] = true
			if byUID && !uidl.ValidUID(e.UID) {
				t.Fatalf("invalid UID accepted: %q", e.UID)
			}
			if !byUID && e.Size < 0 {
				t.Fatalf("negative size accepted")
			}
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("2 320"))
	f.Add([]byte("-1 -1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, s, err := parseStat(b, quote)
		if err == nil && (c < 0 || c > maxMessages || s < 0) {
			t.Fatalf("parseStat(%q) = %d, %d", b, c, s)
		}
	})
}

// formatCapa renders c as a CAPA body, the inverse of parseCapa for every
// field but impl (sanitized, so not round-trippable).
func formatCapa(c capabilities) []byte {
	var b []byte
	for tag, on := range map[string]bool{"STLS": c.stls, "USER": c.user, "UIDL": c.uidl, "PIPELINING": c.pipelining, "RESP-CODES": c.respCodes} {
		if on {
			b = append(b, tag+"\r\n"...)
		}
	}
	if c.expire0 {
		b = append(b, "EXPIRE 0\r\n"...)
	}
	if c.loginDelay > 0 {
		b = fmt.Appendf(b, "LOGIN-DELAY %d\r\n", c.loginDelay)
	}
	if c.sasl != nil {
		b = append(b, "SASL "+strings.Join(c.sasl, " ")+"\r\n"...)
	}
	return b
}

func FuzzParseCapa(f *testing.F) {
	f.Add([]byte("STLS\r\nLOGIN-DELAY 900\r\n"))
	f.Add([]byte("TOP\r\nUSER\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\nEXPIRE 0 USER\r\nLOGIN-DELAY 900 USER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION \x1b[31mevil\r\n"))
	f.Add([]byte("pipelining\nexpire 0\nEXPIRE 30\nLOGIN-DELAY 99999999999\nSASL\n  STLS extra\n"))
	f.Add([]byte("P\u0131PELINING\r\n\u017fTLS\r\n")) // ToUpper maps these to PIPELINING and STLS
	f.Add([]byte("EXPIRENEVER\r\nEXPIRE0 USER\r\nexpire 007\r\nEXPIRE\r\nEXPIRE \u0131\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := parseCapa(b)
		// An independent reading of the same lines: a tag is on only if
		// some line's first field is that tag, ASCII case-insensitively.
		var want capabilities
		var delays []int64
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			tag := f[0]
			switch {
			case asciiEqualFold(tag, "STLS"):
				want.stls = true
			case asciiEqualFold(tag, "USER"):
				want.user = true
			case asciiEqualFold(tag, "UIDL"):
				want.uidl = true
			case asciiEqualFold(tag, "PIPELINING"):
				want.pipelining = true
			case asciiEqualFold(tag, "RESP-CODES"):
				want.respCodes = true
			case len(tag) >= 6 && asciiEqualFold(tag[:6], "EXPIRE") && !strings.ContainsFunc(tag, func(r rune) bool { return r >= utf8.RuneSelf }):
				// Any EXPIRE line counts; its value is the rest of the
				// tag or else the next field.
				v := tag[6:]
				if v == "" && len(f) > 1 {
					v = f[1]
				}
				never := len(v) == 5 && asciiEqualFold(v, "NEVER")
				days := v != "" && strings.Trim(v, "0123456789") == ""
				if !never && (!days || strings.Trim(v, "0") == "") {
					want.expire0 = true
				}
			case asciiEqualFold(tag, "LOGIN-DELAY"):
				if len(f) > 1 {
					if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
						delays = append(delays, n)
					}
				}
			}
		}
		if c.stls != want.stls || c.user != want.user || c.uidl != want.uidl || c.pipelining != want.pipelining || c.respCodes != want.respCodes || c.expire0 != want.expire0 {
			t.Fatalf("parseCapa(%q) = %+v; flags want %+v", b, c, want)
		}
		if c.loginDelay < 0 || c.loginDelay >= 1<<20 || c.loginDelay > 0 && !slices.Contains(delays, c.loginDelay) {
			t.Fatalf("parseCapa(%q): login delay %d; advertised %v", b, c.loginDelay, delays)
		}
		for _, m := range c.sasl {
			if m == "" || strings.ContainsFunc(m, unicode.IsSpace) {
				t.Fatalf("parseCapa(%q): SASL mechanism %q", b, m)
			}
		}
		if len(c.impl) > 80+len("…") || strings.ContainsFunc(c.impl, func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }) || !utf8.ValidString(c.impl) {
			t.Fatalf("parseCapa(%q): IMPLEMENTATION %q is not safe to log", b, c.impl)
		}
		// What was understood survives being said again.
		back := parseCapa(formatCapa(c))
		back.impl = c.impl
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("parseCapa(formatCapa(%+v)) = %+v", c, back)
		}
	})
}

// asciiEqualFold compares ASCII case-insensitively; any other byte must
// match exactly.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// TestSanitizeSameRuleAsLogs: sanitize replaces exactly the characters
// internal/logsafe's Unsafe names (the controls and the bidirectional
// controls, one rule for logs, terminals and quoted replies) and keeps
// every other one.
func TestSanitizeSameRuleAsLogs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain é text", "plain é text"},
		{"esc\x1b[31m", "esc?[31m"},
		{"c1\u0085 del\x7f", "c1? del?"},
		{"bidi \u202eevil\u2066 \u061c\u200f", "bidi ?evil? ??"},
		{"bad \xff utf8", "bad ? utf8"},
	} {
		if got := sanitize(tc.in, 100); got != tc.want {
			t.Errorf("sanitize(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
	for r := rune(0); r < 0x3000; r++ {
		got := sanitize(string(r), 10)
		if replaced := got == "?" && r != '?'; replaced != logsafe.Unsafe(r) {
			t.Errorf("sanitize(%U) = %q; logsafe.Unsafe = %v", r, got, logsafe.Unsafe(r))
		}
	}
}
