package filter

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/filter/filtertest"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/internal/testutil"
)

// readmeRules are the filing rules of README.md's "Spam and virus
// filtering" recipes (keep the two in step): SpamAssassin's X-Spam-Flag
// and rspamd's "add header" verdict (X-Spam: Yes) file into Junk.
var readmeRules = []rules.Spec{
	{Name: "spam", Field: "X-Spam-Flag", Op: rules.Equals, Value: "YES", Action: rules.Action{Kind: rules.Folder, Folder: "Junk"}},
	{Name: "rspamd-spam", Field: "X-Spam", Op: rules.Equals, Value: "Yes", Action: rules.Action{Kind: rules.Folder, Folder: "Junk"}},
}

// TestReadmeRecipes: the README's rules file what the real filters
// mark as spam into Junk and leave their clean mail alone.
func TestReadmeRecipes(t *testing.T) {
	set, err := rules.Compile(readmeRules)
	if err != nil {
		t.Fatal(err)
	}
	spam := withBody("Spam test\r\n" + gtube + "\r\n")
	// rspamd rejects GTUBE itself; its "add header" and "no action"
	// test patterns (enable_test_patterns) get those actions. (The
	// sample message scores over rspamd's add header threshold here:
	// with no DNS its host checks fail.)
	rspamdSpam := withBody("Spam test\r\nY" + gtube[1:] + "\r\n")
	rspamdHam := withBody("Ham test\r\nA" + gtube[1:] + "\r\n")
	type filterCase struct {
		name      string
		f         func(t *testing.T) Filter
		spam, ham string
		rule      string
	}
	cases := []filterCase{
		{"spamc", func(t *testing.T) Filter {
			d := filtertest.Spamd(t)
			f, err := NewCommand("spamassassin", spamcArgv(d.Addr), CommandOptions{TempExitCodes: spamcTempCodes})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, spam, sampleMessage, "spam"},
		{"spamass-milter", func(t *testing.T) Filter {
			d := filtertest.SpamassMilter(t, filtertest.Spamd(t).Addr, "--")
			f, err := NewMilter("spamassassin", "inet:"+d.Addr, MilterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, spam, sampleMessage, "spam"},
		{"rspamd", func(t *testing.T) Filter {
			d := filtertest.Rspamd(t)
			f, err := NewMilter("rspamd", "inet:"+d.Addr, MilterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, rspamdSpam, rspamdHam, "rspamd-spam"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			steps := []Step{{Filter: c.f(t), Timeout: testutil.Slow(60 * time.Second)}}
			for _, m := range []struct{ raw, rule string }{{c.spam, c.rule}, {c.ham, ""}} {
				env, msg := sampleEnv(t, m.raw)
				res, err := Run(context.Background(), steps, env, msg, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Close()
				if res.Action != Accept {
					t.Fatalf("%v %+v, want accept", res.Action, res.Verdicts)
				}
				cp := msg
				if res.Message != nil {
					cp = res.Message
				}
				out, _ := io.ReadAll(cp.Reader())
				head, _, _ := strings.Cut(string(out), "\r\n\r\n")
				d, ok := set.Eval([]byte(head + "\r\n\r\n"))
				if d.Rule != m.rule || ok != (m.rule != "") {
					t.Errorf("rule %q (matched %v), want %q; header:\n%s", d.Rule, ok, m.rule, head)
				} else if ok && d.Action.Folder != "Junk" {
					t.Errorf("rule %q files into %q", d.Rule, d.Action.Folder)
				}
			}
		})
	}
}
