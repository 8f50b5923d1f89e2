package fetch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/rcfile"
)

// stripCases are the header stripping cases, also the fuzz seeds.
var stripCases = []struct {
	name, in, want string
}{
	{"none", "From: a@x\nSubject: hi\n\nbody\n", "From: a@x\nSubject: hi\n\nbody\n"},
	{"both", "X-Popfetch-Reason: unknown user d@x\nX-Popfetch-Unrouted: d@x\nReceived: from x\n\tby y\nSubject: hi\n\nbody\n",
		"Received: from x\n\tby y\nSubject: hi\n\nbody\n"},
	{"folded", "X-Popfetch-Reason: partly routed\n\t(to alice); not routed:\n   unknown user d@x\nSubject: hi\n\nbody\n", "Subject: hi\n\nbody\n"},
	{"case and space before colon", "x-popfetch-REASON : r\nx-Popfetch-Unrouted:d@x\nTo: t@x\n\n", "To: t@x\n\n"},
	{"crlf", "X-Popfetch-Reason: r\r\n\tmore\r\nTo: t@x\r\n\r\nX-Popfetch-Reason: in the body\r\n", "To: t@x\r\n\r\nX-Popfetch-Reason: in the body\r\n"},
	{"several, anywhere in the header", "A: 1\nX-Popfetch-Reason: one\nB: 2\nX-Popfetch-Reason: two\n two\nC: 3\n\n", "A: 1\nB: 2\nC: 3\n\n"},
	{"body only after the empty line", "To: t@x\n\nX-Popfetch-Unrouted: d@x\n", "To: t@x\n\nX-Popfetch-Unrouted: d@x\n"},
	{"a line that is no field ends the header", "To: t@x\nnot a field\nX-Popfetch-Reason: r\n\n", "To: t@x\nnot a field\nX-Popfetch-Reason: r\n\n"},
	{"a name with a space is no field", "To: t@x\nX-Popfetch-Reason x: r\nX-Popfetch-Reason: r\n\n", "To: t@x\nX-Popfetch-Reason x: r\nX-Popfetch-Reason: r\n\n"},
	{"first line folded is malformed", " X: y\nX-Popfetch-Reason: r\n\n", " X: y\nX-Popfetch-Reason: r\n\n"},
	{"similar names stay", "X-Popfetch-Reasons: r\nX-Popfetch-Reason-2: r\nX-Popfetch: r\n\n", "X-Popfetch-Reasons: r\nX-Popfetch-Reason-2: r\nX-Popfetch: r\n\n"},
	{"no body, no final newline", "To: t@x\nX-Popfetch-Reason: r", "To: t@x\n"},
	{"blank continuation", "X-Popfetch-Reason: r\n \t\nTo: t@x\n\n", "To: t@x\n\n"},
	{"empty", "", ""},
}

func TestStripFields(t *testing.T) {
	for _, tc := range stripCases {
		if got := string(stripFields([]byte(tc.in), popfetchFields)); got != tc.want {
			t.Errorf("%s: stripFields(%q) = %q; want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

// readFields is the header of raw as package deliver's reader sees it
// (go-message's textproto.ReadHeader), each field as name: value.
func readFields(raw []byte) []string {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	var out []string
	for f := h.Fields(); f.Next(); {
		out = append(out, f.Key()+": "+f.Value())
	}
	return out
}

// FuzzStripFields: whatever the input, stripFields removes exactly the
// popfetch fields that deliver's header reader sees, leaving every other
// field it sees in order, removes whole lines only, all of them before the
// body, and is idempotent.
func FuzzStripFields(f *testing.F) {
	for _, tc := range stripCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := stripFields(raw, popfetchFields)
		var want []string
		for _, fld := range readFields(raw) {
			name, _, _ := strings.Cut(fld, ":")
			if name != "X-Popfetch-Reason" && name != "X-Popfetch-Unrouted" {
				want = append(want, fld)
			}
		}
		if got := readFields(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("fields after stripping %q:\n%q\nwant\n%q", raw, got, want)
		}
		if again := stripFields(out, popfetchFields); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent on %q: %q then %q", raw, out, again)
		}
		// out is raw with whole lines taken out: walk both.
		lines := func(b []byte) [][]byte {
			l := bytes.SplitAfter(b, []byte("\n"))
			if len(l[len(l)-1]) == 0 {
				l = l[:len(l)-1]
			}
			return l
		}
		rl, ol := lines(raw), lines(out)
		j := 0
		for _, l := range rl {
			if j < len(ol) && bytes.Equal(l, ol[j]) {
				j++
			}
		}
		if j != len(ol) || len(ol) > len(rl) {
			t.Fatalf("%q is not %q with whole lines removed", out, raw)
		}
		// The body, from the first empty line on, is untouched.
		if i := bytes.Index(raw, []byte("\n\n")); i >= 0 && !bytes.HasSuffix(out, raw[i+1:]) {
			t.Fatalf("body changed: %q → %q", raw, out)
		}
	})
}

// rerouteAccount is a multidrop account delivering to {user} Maildirs
// under dir, with alice (an address of her own), bob (a bare local part)
// and carol (a Maildir of her own).
func rerouteAccount(t *testing.T, dir string) *rcfile.Account {
	t.Helper()
	md := testMultidrop(
		mdUser("alice", "alice", "Alice.Smith@example.org"),
		mdUser("bob", "robert"),
		&rcfile.User{Name: "carol", Addresses: []string{"carol"}, Deliver: &rcfile.Destination{Maildir: filepath.Join(dir, "carol-own")}},
	)
	md.LocalDomains = []string{"*.lists.example.com", "example.com", "example.org"}
	return &rcfile.Account{Name: "md", Server: "pop.example.net", Username: "catchall@example.com",
		Deliver:    rcfile.Destination{Maildir: filepath.Join(dir, "{user}")},
		Postmaster: &rcfile.Destination{Maildir: filepath.Join(dir, "postmaster")},
		Multidrop:  md}
}

// A rerouted message reaches the user's own destination (the template
// for alice and bob, her own Maildir for carol) once, without popfetch's
// postmaster fields, with the target's Received and a Delivered-To naming
// the user's address: the first full address configured, else the first
// local part at the first local domain.
func TestRerouterDeliver(t *testing.T) {
	dir := t.TempDir()
	r, err := NewRerouter(rerouteAccount(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("X-Popfetch-Reason: unknown user dave@example.com\nX-Popfetch-Unrouted: dave@example.com\n" +
		"Return-Path: <s@example.net>\nTo: dave@example.com\nSubject: hi\n\nX-Popfetch-Reason: body line\n")
	for _, tc := range []struct{ user, addr, maildir string }{
		{"alice", "Alice.Smith@example.org", "alice"},
		{"bob", "robert@example.com", "bob"},
		{"carol", "carol@example.com", "carol-own"},
	} {
		got, err := r.Deliver(context.Background(), raw, tc.user, false, nil)
		if err != nil {
			t.Fatalf("Deliver to %s: %v", tc.user, err)
		}
		want := Rerouted{User: tc.user, Address: tc.addr, Target: "maildir " + filepath.Join(dir, tc.maildir)}
		if got != want {
			t.Errorf("Deliver to %s = %+v; want %+v", tc.user, got, want)
		}
		files := delivertest.MaildirFiles(t, filepath.Join(dir, tc.maildir))
		if len(files) != 1 {
			t.Fatalf("%s's Maildir holds %d files; want 1", tc.user, len(files))
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		head, body, _ := strings.Cut(s, "\n\n")
		if strings.Contains(head, "X-Popfetch-") || body != "X-Popfetch-Reason: body line\n" {
			t.Errorf("%s's copy still has popfetch's fields, or a changed body:\n%s", tc.user, s)
		}
		if !strings.HasPrefix(s, "Received: from pop.example.net\n") || !strings.Contains(head, "\nDelivered-To: "+tc.addr+"\nReturn-Path: <s@example.net>\n") {
			t.Errorf("%s's copy lacks the Received field or Delivered-To: %s:\n%s", tc.user, tc.addr, s)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the postmaster Maildir was touched: %v", err)
	}
}

// Check: only users of the directory, unless forced; a name that is no
// valid user name never, forced or not. A forced user gets the account's
// default destination at the first local domain.
func TestRerouterCheck(t *testing.T) {
	dir := t.TempDir()
	r, err := NewRerouter(rerouteAccount(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user    string
		force   bool
		unknown bool // ErrUnknownUser
		ok      bool
	}{
		{user: "alice", ok: true},
		{user: "robert", unknown: true}, // an address, not a user
		{user: "dave", unknown: true},
		{user: "dave", force: true, ok: true},
		{user: "../dave", force: true},
		{user: "-dave", force: true},
		{user: "da ve", force: true},
		{user: "", force: true},
	} {
		err := r.Check(tc.user, tc.force)
		if (err == nil) != tc.ok || errors.Is(err, ErrUnknownUser) != tc.unknown {
			t.Errorf("Check(%q, force %v) = %v; want ok %v, unknown %v", tc.user, tc.force, err, tc.ok, tc.unknown)
		}
		if _, derr := r.Deliver(context.Background(), []byte("To: x@example.com\n\nhi\n"), tc.user, tc.force, nil); (derr == nil) != tc.ok {
			t.Errorf("Deliver(%q, force %v) = %v; want the answer of Check", tc.user, tc.force, derr)
		}
	}
	if got := delivertest.MaildirCount(t, filepath.Join(dir, "dave")); got != 1 {
		t.Errorf("forced dave has %d copies; want 1", got)
	}
	if _, err := NewRerouter(&rcfile.Account{Name: "single", Deliver: rcfile.Destination{Maildir: dir}}); err == nil || !strings.Contains(err.Error(), "not a multidrop account") {
		t.Errorf("NewRerouter(single-drop) = %v; want an error saying it is not multidrop", err)
	}
}

// A failing target's classification reaches the caller: an MDA exit 75 is
// temporary, 67 permanent.
func TestRerouterFailure(t *testing.T) {
	dir := t.TempDir()
	a := rerouteAccount(t, dir)
	script := filepath.Join(dir, "mda.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat >/dev/null\nexit $1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code string
		perm bool
	}{{"75", false}, {"67", true}} {
		a.Deliver = rcfile.Destination{MDA: []string{script, tc.code}, MDATimeout: 30 * time.Second, MDATempExitCodes: []int{75}}
		r, err := NewRerouter(a)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Deliver(context.Background(), []byte("To: x@example.com\n\nhi\n"), "alice", false, nil)
		if err == nil || deliver.IsPermanent(err) != tc.perm {
			t.Errorf("MDA exit %s: Deliver = %v; want an error, permanent %v", tc.code, err, tc.perm)
		}
	}
}
