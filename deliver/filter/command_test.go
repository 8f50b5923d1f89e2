package filter

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
)

func TestCommandFilter(t *testing.T) {
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script, "filter", "{sender}"} }
	tests := []struct {
		name     string
		argv     []string
		opts     CommandOptions
		sender   string
		want     Action
		wantOpen Action // on_unavailable = accept
		unavail  bool
		reply    string
		output   string // a substring of the filtered copy; "" = unchanged
	}{
		{"accept unchanged", sh("cat >/dev/null"), CommandOptions{}, "a@example.net", Accept, Accept, false, "", ""},
		{"accept with a header", sh(`printf 'X-Spam-Flag: NO\n'; cat`), CommandOptions{}, "a@example.net", Accept, Accept, false, "",
			"X-Spam-Flag: NO\r\nReturn-Path: <alice@example.net>\r\n"},
		{"sender argument", sh(`printf 'X-Sender: %s\n' "$1"; cat`), CommandOptions{}, "a@example.net", Accept, Accept, false, "", "X-Sender: a@example.net\r\n"},
		{"hostile sender", sh(`printf 'X-Sender: %s\n' "$1"; cat`), CommandOptions{}, "-oQ/tmp/x@example.net", Accept, Accept, false, "", "X-Sender: MAILER-DAEMON\r\n"},
		{"exit 75", sh("cat >/dev/null; echo busy >&2; exit 75"), CommandOptions{}, "", TempFail, Accept, true, "exit 75: busy", ""},
		{"exit 1 rejects", sh("cat >/dev/null; echo spam detected >&2; exit 1"), CommandOptions{}, "", Reject, Reject, false, "exit 1: spam detected", ""},
		{"exit 2 not a reject code", sh("cat >/dev/null; exit 2"), CommandOptions{RejectExitCodes: []int{1}}, "", TempFail, Accept, true, "exit 2", ""},
		{"stderr on success", sh("cat >/dev/null; echo warning >&2"), CommandOptions{}, "", Reject, Reject, false, "wrote to stderr: warning", ""},
		{"timeout", sh("sleep 30"), CommandOptions{Timeout: 300 * time.Millisecond}, "", TempFail, Accept, true, "killed after 300ms", ""},
		{"output too big", sh("cat; head -c 100000 /dev/zero"), CommandOptions{MaxOutput: 5000}, "", TempFail, Accept, true, "output over 5000 bytes", ""},
		{"output not a message", sh("cat >/dev/null; echo OK"), CommandOptions{}, "", TempFail, Accept, true, "not a message", ""},
		{"input not read", sh("exit 0"), CommandOptions{}, "", TempFail, Accept, true, "without reading all", ""},
	}
	for _, tt := range tests {
		for _, policy := range []OnUnavailable{UnavailableTempFail, UnavailableAccept} {
			t.Run(tt.name, func(t *testing.T) {
				f, err := NewCommand("cmd", tt.argv, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				env, m := sampleEnv(t, sampleMessage)
				env.Sender = tt.sender
				start := time.Now()
				res, err := Run(context.Background(), []Step{{Filter: f, Timeout: testutil.Slow(20 * time.Second), OnUnavailable: policy}}, env, m, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Close()
				if time.Since(start) > testutil.Slow(5*time.Second) {
					t.Errorf("took %v", time.Since(start))
				}
				want := tt.want
				if policy == UnavailableAccept {
					want = tt.wantOpen
				}
				v := res.Verdicts[0]
				if res.Action != want || v.Unavailable != tt.unavail || !strings.Contains(v.Reply, tt.reply) {
					t.Errorf("got %v unavailable=%v reply=%q; want %v unavailable=%v reply~%q", res.Action, v.Unavailable, v.Reply, want, tt.unavail, tt.reply)
				}
				if tt.output == "" || res.Action != Accept {
					if res.Message != nil {
						t.Errorf("message changed")
					}
					return
				}
				if res.Message == nil {
					t.Fatal("no filtered copy")
				}
				out, _ := io.ReadAll(res.Message.Reader())
				if !strings.Contains(string(out), tt.output) || !strings.HasSuffix(string(out), "-- \r\nAlice\r\n") {
					t.Errorf("filtered copy %q lacks %q", out, tt.output)
				}
			})
		}
	}
}

func TestNewCommandRefuses(t *testing.T) {
	for _, argv := range [][]string{
		{"/usr/bin/spamc", "-u", "{user}"},
		{"/usr/bin/spamc", "{address}"},
		{"spamc"},
		{},
	} {
		if _, err := NewCommand("x", argv, CommandOptions{}); err == nil {
			t.Errorf("%q accepted", argv)
		}
	}
}
