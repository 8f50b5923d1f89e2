package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// alertDocs reads the JSON documents the alert command appended, one a
// line, as "event condition account".
func alertDocs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var doc struct{ Event, Condition, Account, Subject, Detail string }
		if err := json.Unmarshal([]byte(l), &doc); err != nil {
			t.Fatalf("alert command got %q: %v", l, err)
		}
		out = append(out, doc.Event+" "+doc.Condition+" "+doc.Account)
	}
	return out
}

// alertMessages reads the alert Maildir's messages, oldest first, and
// returns their subjects and the messages.
func alertMessages(t *testing.T, dir string) (subjects []string, raw []string) {
	t.Helper()
	files := maildirFiles(t, dir)
	type msg struct {
		mod  time.Time
		name string
		text string
	}
	var ms []msg
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		ms = append(ms, msg{fi.ModTime(), filepath.Base(p), string(b)})
	}
	sort.Slice(ms, func(i, j int) bool {
		if !ms[i].mod.Equal(ms[j].mod) {
			return ms[i].mod.Before(ms[j].mod)
		}
		return ms[i].name < ms[j].name
	})
	for _, m := range ms {
		i := strings.Index(m.text, "\nSubject: ")
		if i < 0 {
			t.Fatalf("alert without a Subject:\n%s", m.text)
		}
		s := m.text[i+len("\nSubject: "):]
		subjects = append(subjects, strings.TrimRight(s[:strings.IndexByte(s, '\n')], "\r"))
		raw = append(raw, m.text)
	}
	return subjects, raw
}

// TestDaemonAlerts: with the real binary and a real dovecot, a wrong
// password raises one auth-hold alert, delivered into the alert Maildir
// and to the alert command as JSON; more failed polls raise nothing
// more; a fixed password and SIGHUP clear it with one recovery notice. A
// rejected reload raises its own alert, cleared by the next accepted
// one. `popfetch status` lists what is active.
func TestDaemonAlerts(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "erin", "erin-right")
	mb.Put(t, seqMsg("erin", 1, 2))
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	pw := filepath.Join(dir, "erin.pw")
	writeFile(t, pw, "erin-wrong\n")
	alerts := filepath.Join(dir, "AlertMaildir")
	jsonl := filepath.Join(dir, "alerts.jsonl")
	top := []string{
		"alert {",
		"  maildir = " + quote(alerts),
		`  to      = "postmaster@example.com"`,
		`  command = ["/bin/sh", "-c", "cat >> \"$1\"", "sh", ` + quote(jsonl) + `]`,
		"}",
	}
	erin := rcAccount{name: "erin", port: srv.PlainPort, user: mb.User, passFile: pw, maildir: filepath.Join(dir, "Maildir")}
	good := rcText(filepath.Join(dir, "state"), top, erin)
	writeFile(t, rc, good)

	d := startDaemon(t, rc)
	waitFor(t, daemonWait, "the auth-hold alert in the Maildir and from the command", func() bool {
		return maildirCount(t, alerts) >= 1 && len(alertDocs(t, jsonl)) >= 1
	})
	for range 3 { // more failed polls: nothing new
		if r := daemonCLI(t, rc, "now", "erin"); r.code != exitAuth {
			t.Fatalf("popfetch now erin = exit %d; want %d\n%s", r.code, exitAuth, r.stderr)
		}
	}
	if r := daemonCLI(t, rc, "status"); !strings.Contains(r.stdout, "alerts active: 1") || !strings.Contains(r.stdout, "erin") || !strings.Contains(r.stdout, "auth-hold") {
		t.Errorf("status while held:\n%s", r.stdout)
	}

	writeFile(t, pw, mb.Pass+"\n")
	d.signal(t, syscall.SIGHUP)
	waitMaildir(t, erin.maildir, 1, daemonWait)
	waitFor(t, daemonWait, "the recovery notice", func() bool {
		return maildirCount(t, alerts) >= 2 && len(alertDocs(t, jsonl)) >= 2
	})
	if r := daemonCLI(t, rc, "status"); !strings.Contains(r.stdout, "alerts active: none") {
		t.Errorf("status after the fix:\n%s", r.stdout)
	}

	// A broken rc file is rejected: one alert, however often it is
	// reloaded; the next good file clears it.
	replace := func(text string) {
		tmp := rc + ".new"
		writeFile(t, tmp, text)
		if err := os.Rename(tmp, rc); err != nil {
			t.Fatal(err)
		}
	}
	replace(good + "\naccount \"broken\" {\n  port = \"x\"\n}\n")
	waitFor(t, daemonWait, "the reload-rejected alert", func() bool {
		return maildirCount(t, alerts) >= 3 && len(alertDocs(t, jsonl)) >= 3
	})
	d.signal(t, syscall.SIGHUP) // rejected again: no new alert
	waitFor(t, daemonWait, "the second rejected reload", func() bool {
		return len(d.log.lines("rc file has errors", "trigger=SIGHUP")) >= 1
	})
	if r := daemonCLI(t, rc, "status"); !strings.Contains(r.stdout, "(daemon)") || !strings.Contains(r.stdout, "reload-rejected") {
		t.Errorf("status after a rejected reload:\n%s", r.stdout)
	}
	replace(good)
	waitFor(t, daemonWait, "the reload-rejected recovery notice", func() bool {
		return maildirCount(t, alerts) >= 4 && len(alertDocs(t, jsonl)) >= 4
	})
	for range 3 { // healthy polls: nothing new
		if r := daemonCLI(t, rc, "now", "erin"); r.code != 0 {
			t.Fatalf("popfetch now erin = exit %d\n%s", r.code, r.stderr)
		}
	}
	time.Sleep(2 * time.Second) // anything late would show now

	want := []string{"raised auth-hold erin", "cleared auth-hold erin", "raised reload-rejected ", "cleared reload-rejected "}
	if got := alertDocs(t, jsonl); !slices.Equal(got, want) {
		t.Errorf("alert command got %q\nwant %q", got, want)
	}
	subjects, raw := alertMessages(t, alerts)
	wantSubj := []string{
		"[popfetch] ALERT: account erin: authentication hold",
		"[popfetch] RESOLVED: account erin: authentication hold",
		"[popfetch] ALERT: popfetch: rc file rejected",
		"[popfetch] RESOLVED: popfetch: rc file rejected",
	}
	if !slices.Equal(subjects, wantSubj) {
		t.Errorf("alert Maildir subjects %q\nwant %q", subjects, wantSubj)
	}
	for _, m := range raw {
		for _, h := range []string{"\nFrom: \"popfetch\" <popfetch@", "\nTo: <postmaster@example.com>", "\nDate: ", "\nMessage-Id: <alert.", "\nAuto-Submitted: auto-generated"} {
			if !strings.Contains(m, h) {
				t.Errorf("alert lacks %q:\n%s", strings.TrimSpace(h), m)
			}
		}
		if strings.Contains(m, "erin-wrong") || strings.Contains(m, mb.Pass) {
			t.Errorf("an alert shows a password:\n%s", m)
		}
	}
	if len(raw) == 4 && !strings.Contains(raw[2], "port") {
		t.Errorf("the reload alert does not carry the diagnostics:\n%s", raw[2])
	}
	if os.Getenv("POPFETCH_SHOW_ALERTS") != "" {
		for _, m := range raw {
			t.Logf("alert message:\n%s", bytes.ReplaceAll([]byte(m), []byte("\r\n"), []byte("\n")))
		}
	}
	// The active set is in the state directory, private to the daemon.
	fi, err := os.Stat(filepath.Join(dir, "state", "alerts.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, %v; want mode 0600", fi, err)
	}
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }
