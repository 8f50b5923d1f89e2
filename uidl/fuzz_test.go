package uidl

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse checks the journal parser: it never panics, it fails only with
// ErrCorrupt, cutting the torn tail it reports is a fixed point, and whatever
// it accepts survives compaction (re-serialised, it re-parses to the same
// state).
func FuzzParse(f *testing.F) {
	const h = header + "\n"
	for _, seed := range []string{
		"",
		h,
		h + "+ a 1\nr b 2 x@example.com\nr b 3 y@example.com\nn c 4\n- a\n",
		h + "+ a 1\n- a\n+ a 2\nr a 3 q\nn a 9\n",
		h + "r a 1 jörg@example.com\n+ a 2\n",
		h + "+ a 1\n+ b",      // torn tail
		"popfetch-ui",         // torn header
		h + "+ a 1\n\x00\x00", // zero-filled tail
		h + "+ a 1\n\x00\x00+ b 2\n",
		h + "+ a -5\n+ b 9223372036854775807\n",
		"+ a 1\n",           // missing header
		"popfetch-uidl 4\n", // future version
		h + "x a 1\n",       // unknown kind
		h + "+ a 99999999999999999999\n",
		h + "+ a 1\r\n",
		h + "i a 1 /m/new/1.M2P3%20x\nr a 1 q\n",
		h + "i a 1 /m/new/1\n+ a 2\ni b 3 \n",
		h + "p a 1\nn a 2\np a 3\n+ b 4\np b 5\n- a\np c 6 x\n",
		h + "+ a 1\nd a 5 1\nd a 6 2\nd b 7 0\nd c 8 3\nd c 9 0\nd a 9 01\n",
		h + "+ a 1 100 0123abcd\n+ a 2 100 0123abcd\n+ a 3 120 ff\n+ b 4\n+ b 5 7 aa\n",
		h + "i a 1 /m/new/1 100 ab\n+ a 2 100 ab\ni b 3 /m/new/2 5 c\nr b 4 q\n",
		h + "+ a 1 100\n",
		h + "+ a 1 -1 ab\n",
		h + "+ a 1 1 " + strings.Repeat("f", 65) + "\n",
		headerV1 + "\n+ a 1\nr b 2 x@example.com\ni c 3 /m/new/3\n",
		headerV1 + "\n+ a 1 100 ab\n",
		h + "p a 1 100\np b 2\np a 3 7\np c 4 -1\n",
		h + "r a 1 x@y 5 aa\nr a 2 z@y 5 aa\nr a 3 x@y 6 bb\nr b 4 q\nr b 5 w 1 cc\n+ a 6 5 aa\n",
		headerV1 + "\np a 1 100\n",
		headerV1 + "\n+ a 1\nd a 5 1\nd a 6 2\n",
		h + "+ a 1 100 ab\nd a 5 1\nd a 6 1 100 ab\n",
		h + "f a 1 1\nf a 2 2\nf a 3 0\nf b 4 0\n+ c 5\nf c 6 3\nd c 7 1\np c 8 9\nf d 9 01\n",
		headerV1 + "\n+ a 1\nf a 2 1\n",
		h + "r a 1 x@y 5 aa\n+ a 7 5 aa\n+ a 9 6 bb\nn b 2\n+ b 8 3 cc\n+ c 4\n+ c 6 1 dd\n+ d 9 1 ee\n+ d 3 2 ff\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, res, err := replay(bytes.NewReader(data), int64(len(data)), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("replay error %v is not ErrCorrupt", err)
			}
			return
		}
		if res.good < 0 || res.good > int64(len(data)) || (!res.torn && res.good != int64(len(data))) {
			t.Fatalf("good = %d, torn = %v, len = %d", res.good, res.torn, len(data))
		}
		want := viewOf(st).String() + refusals(st)

		kept := data[:res.good]
		st2, res2, err := replay(bytes.NewReader(kept), int64(len(kept)), "fuzz")
		if err != nil || res2.torn || res2.good != res.good {
			t.Fatalf("replay of the kept prefix: %v, torn=%v good=%d; want clean %d", err, res2.torn, res2.good, res.good)
		}
		if got := viewOf(st2).String() + refusals(st2); got != want {
			t.Fatalf("kept prefix state = %s; want %s", got, want)
		}

		var buf bytes.Buffer
		n, err := writeCompact(&buf, st)
		if err != nil {
			t.Fatal(err)
		}
		st3, res3, err := replay(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "compacted")
		if err != nil || res3.torn || !res3.hasHeader || res3.good != int64(buf.Len()) {
			t.Fatalf("compacted journal %q does not re-parse cleanly: %v %+v", buf.Bytes(), err, res3)
		}
		if got := viewOf(st3).String() + refusals(st3); got != want {
			t.Fatalf("compacted state = %s; want %s", got, want)
		}
		if st3.records != n || n != st.live() || st3.delivered != st.delivered {
			t.Fatalf("records %d, written %d, live %d, delivered %d vs %d", st3.records, n, st.live(), st3.delivered, st.delivered)
		}
	})
}

// refusals lists the DELE refusal counts of st, which viewOf leaves out.
func refusals(st *state) string {
	var out []string
	for uid, e := range st.m {
		if e.refused > 0 {
			out = append(out, fmt.Sprintf("%s:%d@%d", uid, e.refused, e.refusedAt))
		}
	}
	slices.Sort(out)
	return " refused=" + strings.Join(out, ",")
}

// decodeName inverts fileName for names that were not shortened.
func decodeName(name string) (user, server string, port int, ok bool) {
	c := strings.LastIndexByte(name, ':')
	a := strings.LastIndexByte(name[:max(c, 0)], '@')
	if c < 0 || a < 0 {
		return "", "", 0, false
	}
	p, err := strconv.Atoi(name[c+1:])
	if err != nil {
		return "", "", 0, false
	}
	unescape := func(s string) (string, bool) {
		var b []byte
		for i := 0; i < len(s); i++ {
			if s[i] != '%' {
				b = append(b, s[i])
				continue
			}
			if i+2 >= len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b = append(b, byte(v))
			i += 2
		}
		return string(b), true
	}
	u, ok1 := unescape(name[:a])
	h, ok2 := unescape(name[a+1 : c])
	return u, h, p, ok1 && ok2
}

// FuzzLegacyPath checks that old journal names stay inside the uidl
// directory, are valid file names, and are injective: an unshortened name
// decodes back to its (user, lower-cased server, port).
func FuzzLegacyPath(f *testing.F) {
	f.Add("joe", "pop.example.com", 995)
	f.Add("joe@example.com", "POP.example.com", 110)
	f.Add("../..", "a/b", -1)
	f.Add(".x\x00%", "@:", 0)
	f.Add(strings.Repeat("%", 120), strings.Repeat("Z", 200), 1)
	f.Fuzz(func(t *testing.T, user, server string, port int) {
		path := LegacyPath("/state", user, server, port)
		dir, base := filepath.Split(path)
		if dir != "/state/uidl/" || base == "" || strings.HasPrefix(base, ".") || strings.ContainsAny(base, "/\x00") {
			t.Fatalf("Path = %q escapes, hides or is invalid", path)
		}
		if len(base) > maxName {
			t.Fatalf("name of %d bytes", len(base))
		}
		if strings.Contains(base, "%~") {
			return // shortened: unique by SHA-256
		}
		u, h, p, ok := decodeName(base)
		if !ok || u != user || h != asciiLower(server) || p != port {
			t.Fatalf("decode(%q) = %q %q %d %v; want %q %q %d", base, u, h, p, ok, user, server, port)
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
