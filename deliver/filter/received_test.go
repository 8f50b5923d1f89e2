package filter

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// describe is the golden form of a parse.
func describe(r Received) string {
	ip := ""
	if r.ClientIP.IsValid() {
		ip = r.ClientIP.String()
	}
	return fmt.Sprintf("ip=%s name=%s helo=%s by=%s", ip, r.ClientName, r.Helo, r.By)
}

// TestReceivedGolden parses every Received field of the samples in
// testdata/received (as Gmail, Exchange Online, Postfix, dovecot-lmtp,
// Exim, Sendmail and qmail write them, and hostile ones) and compares
// with the .golden file beside each.
func TestReceivedGolden(t *testing.T) {
	samples, _ := filepath.Glob("testdata/received/*.eml")
	if len(samples) == 0 {
		t.Fatal("no samples")
	}
	for _, p := range samples {
		t.Run(filepath.Base(p), func(t *testing.T) {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			fields, _ := splitHeader(raw)
			var out strings.Builder
			n := 0
			for _, f := range fields {
				if !strings.EqualFold(f.Name, "Received") {
					continue
				}
				n++
				fmt.Fprintf(&out, "%d: %s\n", n, describe(ParseReceived(f.unfolded())))
			}
			golden := strings.TrimSuffix(p, ".eml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
			}
		})
	}
}

func TestTrustedReceived(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/received/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		sample string
		trust  Trust
		want   string // describe, or "error"
		index  int
	}{
		{"gmail topmost has no from", "gmail.eml", Trust{}, "ip= name= helo= by=", 1},
		{"gmail by mx.google.com", "gmail.eml", Trust{By: "MX.Google.com."}, "ip=203.0.113.25 name=mail.example.net helo=mail.example.net by=mx.google.com", 2},
		{"gmail position 3", "gmail.eml", Trust{Position: 3}, "ip=198.51.100.7 name=dsl-198-51-100-7.isp.example helo=[192.168.1.20] by=mail.example.net", 3},
		{"outlook wildcard", "outlook.eml", Trust{By: "*.mail.protection.outlook.com"}, "ip=209.85.221.50 name= helo=mail-wr1-f50.google.com by=dm6nam12ft045.mail.protection.outlook.com", 3},
		{"dovecot topmost", "postfix-dovecot.eml", Trust{}, "ip=192.0.2.10 name= helo=mx1.example.org by=imap1.example.org", 1},
		{"postfix by mx1", "postfix-dovecot.eml", Trust{By: "mx1.example.org"}, "ip=2001:db8::25 name=mail.example.com helo=mail.example.com by=mx1.example.org", 2},
		{"no such by", "postfix-dovecot.eml", Trust{By: "mx9.example.org"}, "error", 0},
		{"position past the end", "exim.eml", Trust{Position: 9}, "error", 0},
		{"wildcard is not the bare domain", "outlook.eml", Trust{By: "*.outlook.com"}, "ip=2603:10b6:5:1c0::26 name= helo=DM6PR02MB1234.namprd02.prod.outlook.com by=dm6pr02mb5678.namprd02.prod.outlook.com", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := TrustedReceived(read(tt.sample), tt.trust)
			if tt.want == "error" {
				if !errors.Is(err, ErrNoReceived) {
					t.Fatalf("got %v, %s; want ErrNoReceived", err, describe(r))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(r); got != tt.want || r.Index != tt.index {
				t.Errorf("got %d %s\nwant %d %s", r.Index, got, tt.index, tt.want)
			}
		})
	}
}

// FuzzReceived: any header and any Received value parse without panic,
// and whatever comes out is one harmless token.
func FuzzReceived(f *testing.F) {
	samples, _ := filepath.Glob("testdata/received/*.eml")
	for _, p := range samples {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("Received: from (((((((((("))
	f.Add([]byte("Received: from x ([1.2.3.4]:99999999 helo=)\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, tr := range []Trust{{}, {Position: 2}, {By: "mx.example.org"}, {By: "*.example.org"}} {
			r, _ := TrustedReceived(b, tr)
			checkClean(t, r)
		}
		r := ParseReceived(string(b))
		checkClean(t, r)
	})
}

func checkClean(t *testing.T, r Received) {
	t.Helper()
	for _, s := range []string{r.ClientName, r.Helo, r.By} {
		if s == "" {
			continue
		}
		if len(s) > 255 || s[0] == '-' || strings.ContainsAny(s, " \t\r\n\x00\"'();<>\\$`") {
			t.Fatalf("unsafe value %q in %+v", s, r)
		}
	}
}
