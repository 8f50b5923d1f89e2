package metrics

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	// Fields 3.. of a real line; the command name is field 2.
	rest := "S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 98765 1757937664 3814 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	want := procStat{utime: 250, stime: 75, starttime: 98765, vsize: 1757937664, rss: 3814}
	for _, comm := range []string{"(popfetch)", "(a b)", "(x) S 9 9 9)", "()", "((()", "(a)b)"} {
		line := "4242 " + comm + " " + rest + "\n"
		got, err := parseStat([]byte(line))
		if err != nil || got != want {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v", line, got, err, want)
		}
	}
	for _, bad := range []string{"", "4242 popfetch S 1", "1 (x) S 1 2 3", "1 (x) " + strings.Replace(rest, "250", "x", 1)} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
	if runtime.GOOS != "linux" {
		return
	}
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseStat(b)
	if err != nil || s.rss == 0 || s.vsize == 0 || s.starttime == 0 {
		t.Errorf("parseStat(/proc/self/stat) = %+v, %v", s, err)
	}
}

func TestParseBootTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"cpu  1 2 3\nintr 5\nbtime 1796000000\nprocesses 9\n", 1796000000, true},
		{"btime 12", 12, true},
		{"cpu 1\n", 0, false},
		{"btime x\n", 0, false},
		{"xbtime 5\n", 0, false},
	} {
		got, ok := parseBootTime([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseBootTime(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseNetstat(t *testing.T) {
	t.Parallel()
	const real = `TcpExt: SyncookiesSent SyncookiesRecv
TcpExt: 0 0
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets
IpExt: 0 0 0 0 0 0 7134992763 6985280952 0
MPTcpExt: MPCapableSYNRX
MPTcpExt: 0
`
	for _, tc := range []struct {
		text            string
		wantIn, wantOut uint64
		ok              bool
	}{
		{real, 7134992763, 6985280952, true},
		{"IpExt: OutOctets InOctets\nIpExt: 5 6\n", 6, 5, true},
		{"IpExt: InOctets\nIpExt: 5\n", 0, 0, false},               // no OutOctets
		{"IpExt: InOctets OutOctets\nIpExt: 5\n", 0, 0, false},     // short value line
		{"IpExt: InOctets OutOctets\nIpExt: 5 -1\n", 0, 0, false},  // not a count
		{"IpExt: InOctets OutOctets\n", 0, 0, false},               // no value line
		{"TcpExt: InOctets OutOctets\nTcpExt: 1 2\n", 0, 0, false}, // not IpExt
	} {
		in, out, ok := parseNetstat([]byte(tc.text))
		if ok != tc.ok || ok && (in != tc.wantIn || out != tc.wantOut) {
			t.Errorf("parseNetstat(%q) = %d, %d, %v; want %d, %d, %v", tc.text, in, out, ok, tc.wantIn, tc.wantOut, tc.ok)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (popfetch) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 98765 1757937664 3814 18446744073709551615 1"))
	f.Add([]byte("1 (a) b) c"))
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err != nil {
			if s != (procStat{}) {
				t.Errorf("parseStat(%q) = %+v with error %v", b, s, err)
			}
			return
		}
		// What parsed is the text after the last ')': the same fields
		// under another command name parse the same.
		i := bytes.LastIndexByte(b, ')')
		again, err := parseStat(append([]byte("7 (other name)"), b[i+1:]...))
		if err != nil || again != s {
			t.Errorf("parseStat(%q) = %+v; under another name %+v, %v", b, s, again, err)
		}
	})
}

func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte("IpExt: InOctets OutOctets\nIpExt: 5 6\n"))
	f.Add([]byte("IpExt: a\nIpExt: 1\nIpExt: InOctets OutOctets\nIpExt: 1 2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, out, ok := parseNetstat(b)
		if !ok {
			return
		}
		if !bytes.Contains(b, []byte("IpExt:")) || !bytes.Contains(b, []byte("InOctets")) || !bytes.Contains(b, []byte("OutOctets")) {
			t.Errorf("parseNetstat(%q) = %d, %d, true without the IpExt counters", b, in, out)
		}
		canon := fmt.Sprintf("IpExt: OutOctets InOctets\nIpExt: %d %d\n", out, in)
		if in2, out2, ok2 := parseNetstat([]byte(canon)); !ok2 || in2 != in || out2 != out {
			t.Errorf("parseNetstat(%q) = %d, %d, %v; want %d, %d", canon, in2, out2, ok2, in, out)
		}
	})
}

func FuzzParseBootTime(f *testing.F) {
	f.Add([]byte("cpu 1\nbtime 1796000000\n"))
	f.Add([]byte("btime +1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := parseBootTime(b)
		if !ok {
			return
		}
		if !bytes.HasPrefix(b, []byte("btime ")) && !bytes.Contains(b, []byte("\nbtime ")) {
			t.Errorf("parseBootTime(%q) = %d without a btime line", b, n)
		}
		if n2, ok2 := parseBootTime(fmt.Appendf(nil, "btime %d\n", n)); !ok2 || n2 != n {
			t.Errorf("parseBootTime does not read back %d: %d, %v", n, n2, ok2)
		}
	})
}
