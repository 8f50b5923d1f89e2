package fetch

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/popfetch/popfetch/rcfile"
)

// testRules are the filing rules of the tests: a virus to the
// postmaster, spam into Junk, a list to another Maildir, noise
// discarded.
func testRules(dir string) []rcfile.Rule {
	return []rcfile.Rule{
		{Spec: rules.Spec{Name: "virus", Field: "X-Virus-Status", Op: rules.Contains, Value: "infected", Action: rules.Action{Kind: rules.Postmaster, Reason: "virus found"}}},
		{Spec: rules.Spec{Name: "spam", Field: "X-Spam-Flag", Op: rules.Equals, Value: "YES", Action: rules.Action{Kind: rules.Folder, Folder: "Junk"}}},
		{Spec: rules.Spec{Name: "list", Field: "List-Id", Op: rules.Matches, Value: `<dev\.example\.org>`, Action: rules.Action{Kind: rules.Deliver, Target: 2}},
			Deliver: &rcfile.Destination{Maildir: filepath.Join(dir, "lists")}},
		{Spec: rules.Spec{Name: "noise", Field: "Subject", Op: rules.Contains, Value: "[ADV]", CaseSensitive: true, Action: rules.Action{Kind: rules.Discard}}},
	}
}

// ruleMessages are one message per rule, and one no rule matches.
var ruleMessages = []struct {
	name, head string
}{
	{"virus", "X-Virus-Status: Infected (Eicar)\r\nX-Spam-Flag: YES\r\n"},
	{"spam", "X-Spam-Flag: yes\r\n"},
	{"list", "List-Id: Dev <dev.example.org>\r\n"},
	{"noise", "Subject: [ADV] buy\r\n"},
	{"none", "Subject: [adv] hello\r\n"},
}

// singleDropRules is the dispatcher of a single-drop account with
// testRules, delivering to dir's Maildir, its postmaster dir's pm.
func singleDropRules(t *testing.T, dir string) Dispatcher {
	t.Helper()
	disp, err := NewDispatcher(&rcfile.Account{
		Name:       "a",
		Deliver:    rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
		Postmaster: &rcfile.Destination{Maildir: filepath.Join(dir, "pm")},
		Rules:      testRules(dir),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeTargets(disp) })
	return disp
}

// Each single-drop copy goes where its first matching rule says, through
// the usual two phases (its intent names the folder's new/), the
// discarded one nowhere but into the log, the quarantined one to the
// postmaster with the rule's reason.
func TestSingleDropRules(t *testing.T) {
	dir := t.TempDir()
	disp := singleDropRules(t, dir)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, msg := range ruleMessages {
		p := &intentLog{t: t}
		m := &deliver.Message{UID: msg.name, Raw: []byte(msg.head + "X-Test: " + msg.name + "\r\n\r\nbody\r\n")}
		if err := disp.Dispatch(context.Background(), m, p, log); err != nil {
			t.Fatalf("%s: %v", msg.name, err)
		}
		if msg.name == "noise" {
			if len(p.intents) != 0 {
				t.Errorf("discarded copy has intents %q", p.intents)
			}
			continue
		}
		if len(p.intents) != 1 || !deliver.Committed(p.intents[0]) {
			t.Errorf("%s: intents %q; want one, committed", msg.name, p.intents)
		}
	}
	where := map[string]string{
		"virus": filepath.Join(dir, "pm"),
		"spam":  filepath.Join(dir, "Maildir", ".Junk"),
		"list":  filepath.Join(dir, "lists"),
		"none":  filepath.Join(dir, "Maildir"),
	}
	for name, md := range where {
		files := delivertest.MaildirFiles(t, md, "new")
		if len(files) != 1 {
			t.Errorf("%s: %s holds %d messages; want 1", name, md, len(files))
			continue
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "X-Test: "+name+"\n") {
			t.Errorf("%s: %s holds another message:\n%s", name, md, b)
		}
		if name == "virus" && !strings.Contains(string(b), "X-Popfetch-Reason: rule virus: virus found\n") {
			t.Errorf("quarantined copy lacks the rule's reason:\n%s", b)
		}
	}
	out := logBuf.String()
	if !strings.Contains(out, "level=WARN msg=\"rule discarded the copy; it counts as delivered\" rule=noise action=discard field=Subject value=\"[ADV] buy\"") {
		t.Errorf("no warning for the discarded copy:\n%s", out)
	}
	if !strings.Contains(out, "rule filed the copy\" rule=spam action=folder field=X-Spam-Flag value=yes folder=Junk") {
		t.Errorf("no decision logged for the filed copy:\n%s", out)
	}
}

// A permanent failure of the folder's target goes to the postmaster as
// any permanent failure does; a temporary one keeps the message.
func TestSingleDropRuleTargetFails(t *testing.T) {
	dir := t.TempDir()
	// A file where the folder's Maildir would be: open fails (ENOTDIR),
	// a temporary failure.
	if err := os.WriteFile(filepath.Join(dir, "lists"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	disp := singleDropRules(t, dir)
	m := &deliver.Message{UID: "l", Raw: []byte("List-Id: <dev.example.org>\r\n\r\nbody\r\n")}
	err := disp.Dispatch(context.Background(), m, &intentLog{t: t}, nil)
	if err == nil || deliver.IsPermanent(err) {
		t.Fatalf("Dispatch = %v; want a temporary failure", err)
	}
	for _, md := range []string{"Maildir", "pm"} {
		if n := len(delivertest.MaildirFiles(t, filepath.Join(dir, md), "new")); n != 0 {
			t.Errorf("%s holds %d messages after a temporary failure", md, n)
		}
	}
}

// In a multidrop account a user's own rules come first, then the
// account's apply to every user: the discarded user's copy is recorded
// as done, a postmaster action makes the message's one postmaster copy
// with the rule's reason, a folder action files the user's copy in the
// folder of the user's own Maildir.
func TestMultidropRules(t *testing.T) {
	dir := t.TempDir()
	ann := mdUser("ann", "ann")
	bob := mdUser("bob", "bob")
	bob.Deliver = &rcfile.Destination{Maildir: filepath.Join(dir, "bob-own")}
	bob.Rules = []rcfile.Rule{{Spec: rules.Spec{Name: "bob-lists", Field: "List-Id", Op: rules.Contains, Value: "dev", Action: rules.Action{Kind: rules.Folder, Folder: "Lists.dev"}}}}
	md := testMultidrop(ann, bob)
	md.EnvelopeHeader = ""
	a := &rcfile.Account{
		Name:       "d",
		Username:   "catchall@example.com",
		Deliver:    rcfile.Destination{Maildir: filepath.Join(dir, "{user}")},
		Postmaster: &rcfile.Destination{Maildir: filepath.Join(dir, "pm")},
		Multidrop:  md,
		Rules:      testRules(dir),
	}
	disp, err := NewDispatcher(a)
	if err != nil {
		t.Fatal(err)
	}
	defer closeTargets(disp)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	send := func(head string) *recordingProgress {
		t.Helper()
		p := &recordingProgress{done: map[string]bool{}}
		m := &deliver.Message{UID: "x", Raw: []byte("To: ann@example.com, bob@example.com\r\n" + head + "\r\nbody\r\n")}
		if err := disp.Dispatch(context.Background(), m, p, log); err != nil {
			t.Fatal(err)
		}
		return p
	}
	count := func(md string) int { return len(delivertest.MaildirFiles(t, filepath.Join(dir, md), "new")) }

	send("X-Spam-Flag: YES\r\n")
	if count("ann/.Junk") != 1 || count("bob-own/.Junk") != 1 || count("ann") != 0 || count("bob-own") != 0 {
		t.Errorf("spam: ann/.Junk %d, bob-own/.Junk %d, ann %d, bob-own %d; want the Junk folders", count("ann/.Junk"), count("bob-own/.Junk"), count("ann"), count("bob-own"))
	}
	// bob's own rule first; ann gets the account's list rule.
	send("List-Id: <dev.example.org>\r\n")
	if count("bob-own/.Lists.dev") != 1 || count("lists") != 1 {
		t.Errorf("list: bob-own/.Lists.dev %d, lists %d; want 1 each", count("bob-own/.Lists.dev"), count("lists"))
	}
	p := send("Subject: [ADV] x\r\n")
	if !p.done["u:ann"] || !p.done["u:bob"] || count("ann") != 0 || count("bob-own") != 0 {
		t.Errorf("noise: recorded %v; want both users done without copies", p.done)
	}
	if n := strings.Count(logBuf.String(), "rule discarded the copy"); n != 2 {
		t.Errorf("%d discard warnings; want one per user:\n%s", n, logBuf.String())
	}
	p = send("X-Virus-Status: infected\r\n")
	files := delivertest.MaildirFiles(t, filepath.Join(dir, "pm"), "new")
	if len(files) != 1 || p.done["u:ann"] || p.done["u:bob"] {
		t.Fatalf("virus: postmaster holds %d, recorded %v; want one copy and no user done", len(files), p.done)
	}
	b, _ := os.ReadFile(files[0])
	if !strings.Contains(string(b), "rule virus: virus found") {
		t.Errorf("postmaster copy lacks the rule's reason:\n%s", b)
	}
}

// recordingProgress keeps what a multidrop delivery records.
type recordingProgress struct {
	nopProgress
	done map[string]bool
}

func (p *recordingProgress) Done(k string) bool { return p.done[k] }
func (p *recordingProgress) Record(k string) error {
	p.done[k] = true
	return nil
}
