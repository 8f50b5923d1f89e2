package filter

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/testutil"
)

// TestCommandFilterOutputStillOpen: a filter program that exits 0 while
// a process it started in a session of its own (beyond the process-group
// kill) still holds its stdout and writes the rest of the message later.
// What was read by then is a truncated message; taking it as the
// filtered copy delivers a message without its body, and the original
// is deleted. It must count as the filter being unavailable.
func TestCommandFilterOutputStillOpen(t *testing.T) {
	script := `T=$(mktemp); cat >"$T"; setsid sh -c "head -c 40 '$T'; sleep 9; tail -c +41 '$T'; rm -f '$T'" & sleep 0.5; exit 0`
	f, err := NewCommand("late", []string{"/bin/sh", "-c", script}, CommandOptions{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	raw := "Subject: hello there\r\nX-A: 0123456789\r\nFrom: a@example.org\r\n\r\nthe body that must not be lost\r\n"
	m := &deliver.Message{Account: "acct", UID: "u1", Raw: []byte(raw)}
	env := &Envelope{Rcpts: []string{"u@example.org"}, SpoolDir: testutil.PrivateDir(t)}
	v, err := f.Check(context.Background(), env, m)
	t.Cleanup(v.Close) // the spools of the verdict, whatever Check said
	if err != nil || v.Action != Accept {
		return // unavailable or not accepted: the message stays
	}
	if v.Message == nil {
		t.Fatal("accepted unchanged although the program's output was still being written")
	}
	b, _ := io.ReadAll(v.Message.Reader())
	if !strings.Contains(string(b), "the body that must not be lost") {
		t.Fatalf("a truncated output was taken as the filtered message: %q", b)
	}
}

// TestCommandFilterOutputNotTheMessage: a program that exits 0 but
// writes a report instead of the message (clamdscan's "stdin: OK",
// rspamc --json, a header without the body) must not replace the
// message: the original would be deleted and only the report delivered.
func TestCommandFilterOutputNotTheMessage(t *testing.T) {
	raw := "Return-Path: <a@example.org>\r\nFrom: a@example.org\r\nSubject: hello\r\n\r\nthe body\r\n"
	for _, tc := range []struct{ name, script string }{
		{"clamdscan --no-summary", `cat >/dev/null; printf 'stdin: OK\n'`},
		{"clamdscan with summary", `cat >/dev/null; printf 'stdin: OK\n\n----------- SCAN SUMMARY -----------\nInfected files: 0\n'`},
		{"rspamc --json", `cat >/dev/null; printf '{"is_skipped":false,"score":0.5,"action":"no action"}\n'`},
		{"the header only", `T=$(mktemp); cat >"$T"; sed '/^$/q' "$T" | sed '$d'; rm -f "$T"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewCommand("report", []string{"/bin/sh", "-c", tc.script}, CommandOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m := &deliver.Message{Account: "acct", UID: "u1", Raw: []byte(raw)}
			env := &Envelope{Rcpts: []string{"u@example.org"}, SpoolDir: testutil.PrivateDir(t)}
			v, err := f.Check(context.Background(), env, m)
			t.Cleanup(v.Close) // the spools of the verdict, whatever Check said
			if err == nil && v.Action == Accept && v.Message != nil {
				b, _ := io.ReadAll(v.Message.Reader())
				t.Fatalf("the program's output replaced the message: %q", b)
			}
		})
	}
	// What a real filter writes is still taken.
	f, err := NewCommand("ok", []string{"/bin/sh", "-c", `printf 'X-Spam-Flag: NO\n'; cat`}, CommandOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := &deliver.Message{Account: "acct", UID: "u1", Raw: []byte(raw)}
	v, err := f.Check(context.Background(), &Envelope{Rcpts: []string{"u@example.org"}, SpoolDir: testutil.PrivateDir(t)}, m)
	t.Cleanup(v.Close) // the spools of the verdict, whatever Check said
	if err != nil || v.Message == nil {
		t.Fatalf("a real filter's output refused: %v", err)
	}
}
