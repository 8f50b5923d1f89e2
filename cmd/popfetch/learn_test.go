package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/learned"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

func TestLearnKeys(t *testing.T) {
	const pmTop = "X-Popfetch-Reason: unknown user x@example.com\r\n"
	const received = "Received: from pop.isp.example by host with POP3 (popfetch 1.0); Tue, 1 Jan 2030 00:00:00 +0000\r\n"
	for _, tc := range []struct {
		name, header string
		want         []string
	}{
		{
			name:   "unrouted addresses",
			header: pmTop + "X-Popfetch-Unrouted: list@lists.example.org, Old.Bob@OLD.example.net\r\n" + received + "List-Id: <l.example.org>\r\nFrom: eve@example.net\r\n",
			want:   []string{"list@lists.example.org", "Old.Bob@old.example.net"},
		},
		{
			name:   "below an LMTP server's Received",
			header: "Received: from h by lmtp.example with LMTP id 1; d\r\n" + pmTop + "X-Popfetch-Unrouted: old@example.com\r\n" + received + "List-Id: <l.example.org>\r\n",
			want:   []string{"old@example.com"},
		},
		{
			name:   "not from popfetch",
			header: "X-Popfetch-Unrouted: ceo@example.com\r\nReceived: from a by b with ESMTP; d\r\n",
		},
		{
			name:   "list-id when nothing unrouted",
			header: pmTop + received + "List-Id: The list <L.Example.ORG>\r\nFrom: eve@example.net\r\nReply-To: r@example.net\r\n",
			want:   []string{"list-id:l.example.org"},
		},
		{
			name:   "unrouted field below Received is the sender's",
			header: pmTop + received + "X-Popfetch-Unrouted: ceo@example.com\r\nList-Id: <l.example.org>\r\n",
			want:   []string{"list-id:l.example.org"},
		},
		{
			name:   "never From, Reply-To or Sender",
			header: pmTop + received + "From: a@example.net\r\nReply-To: b@example.net\r\nSender: c@example.net\r\nTo: d@example.net\r\n",
		},
		{
			name:   "unparseable unrouted falls back to List-Id",
			header: "X-Popfetch-Unrouted: @@@\r\n" + received + "List-Id: <l.example.org>\r\n",
			want:   []string{"list-id:l.example.org"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := learnKeys([]byte(tc.header + "\r\nbody\r\n")); !slices.Equal(got, tc.want) {
				t.Errorf("learnKeys = %q; want %q", got, tc.want)
			}
		})
	}
}

func learnAccount(t *testing.T) *rcfile.Account {
	t.Helper()
	return &rcfile.Account{
		Name: "md", Username: "catchall", Server: "pop.example.com", StateDir: filepath.Join(t.TempDir(), "state"),
		Multidrop: &rcfile.Multidrop{LocalDomains: []string{"example.com"}, Users: []*rcfile.User{{Name: "alice"}, {Name: "bob"}}},
	}
}

func TestLearnRoutesAndForget(t *testing.T) {
	a := learnAccount(t)
	var stderr bytes.Buffer
	g := &globals{stdout: &bytes.Buffer{}, stderr: &stderr}
	msg := []byte("X-Popfetch-Unrouted: List@lists.example.org, \"quoted x\"@example.net\r\nReceived: by h with POP3 (popfetch 1.0); d\r\n\r\nbody\r\n")
	got, err := g.learnRoutes(a, msg, "alice", "new/1.msg")
	if err != nil || !slices.Equal(got, []string{"list@lists.example.org -> alice"}) {
		t.Fatalf("learnRoutes = %q, %v; stderr %s", got, err, stderr.String())
	}
	got, err = g.learnRoutes(a, msg, "bob", "new/2.msg")
	if err != nil || !slices.Equal(got, []string{"list@lists.example.org -> bob (was alice)"}) {
		t.Fatalf("learnRoutes(again) = %q, %v", got, err)
	}
	got, err = g.learnRoutes(a, msg, "bob", "new/3.msg")
	if err != nil || !slices.Equal(got, []string{"list@lists.example.org -> bob (already learned)"}) {
		t.Fatalf("learnRoutes(same) = %q, %v", got, err)
	}
	list := []byte("Received: by h; d\r\nList-Id: <news.example.net>\r\n\r\nbody\r\n")
	if got, err := g.learnRoutes(a, list, "alice", "new/4.msg"); err != nil || !slices.Equal(got, []string{"list-id:news.example.net -> alice"}) {
		t.Fatalf("learnRoutes(list) = %q, %v", got, err)
	}
	routes, err := learned.Read(fetch.LearnedPath(a))
	if err != nil || len(routes) != 2 || routes[0].User != "bob" || !strings.HasPrefix(routes[0].Comment, "learned ") || !strings.HasSuffix(routes[0].Comment, " from new/2.msg") {
		t.Fatalf("file routes = %+v, %v", routes, err)
	}
	// Errors: nothing to learn, a bad user, not multidrop.
	if _, err := g.learnRoutes(a, []byte("From: a@example.net\r\n\r\n"), "alice", "x"); err == nil || !strings.Contains(err.Error(), "nothing to learn from x") {
		t.Errorf("learnRoutes(nothing) = %v", err)
	}
	if _, err := g.learnRoutes(a, msg, "../root", "x"); err == nil {
		t.Error("learnRoutes(bad user) = nil error")
	}
	single := *a
	single.Multidrop = nil
	if _, err := g.learnRoutes(&single, msg, "alice", "x"); err == nil || !strings.Contains(err.Error(), "not a multidrop account") {
		t.Errorf("learnRoutes(single-drop) = %v", err)
	}
	stderr.Reset()
	if _, err := g.learnRoutes(a, list, "carol", "x"); err != nil || !strings.Contains(stderr.String(), "carol is not a user of account md") {
		t.Errorf("learnRoutes(unknown user) = %v; stderr %q", err, stderr.String())
	}

	// Forget, in any case of the local part (stored lower-cased).
	if ok, err := g.forgetRoute(a, "LIST@Lists.Example.org"); !ok || err != nil {
		t.Fatalf("forgetRoute = %v, %v", ok, err)
	}
	if ok, err := g.forgetRoute(a, "list@lists.example.org"); ok || err != nil {
		t.Fatalf("forgetRoute(again) = %v, %v; want false", ok, err)
	}
	if ok, err := g.forgetRoute(a, "list-id:<News.Example.Net>"); !ok || err != nil {
		t.Fatalf("forgetRoute(list-id) = %v, %v", ok, err)
	}
	if _, err := g.forgetRoute(a, "not a key"); err == nil {
		t.Error("forgetRoute(bad key) = nil error")
	}
}

// TestForgetCaseSensitive: with case_sensitive the route is stored and
// forgotten as written.
func TestForgetCaseSensitive(t *testing.T) {
	a := learnAccount(t)
	a.Multidrop.CaseSensitive = true
	g := &globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	msg := []byte("X-Popfetch-Unrouted: Joe@example.net\r\nReceived: by h with POP3 (popfetch 1.0); d\r\n\r\n")
	if got, err := g.learnRoutes(a, msg, "alice", "m"); err != nil || !slices.Equal(got, []string{"Joe@example.net -> alice"}) {
		t.Fatalf("learnRoutes = %q, %v", got, err)
	}
	if ok, err := g.forgetRoute(a, "joe@example.net"); ok || err != nil {
		t.Fatalf("forgetRoute(other case) = %v, %v; want false", ok, err)
	}
	if ok, err := g.forgetRoute(a, "Joe@example.net"); !ok || err != nil {
		t.Fatalf("forgetRoute = %v, %v", ok, err)
	}
}

// TestCheckListsLearnedRoutes: popfetch check lists each multidrop
// account's learned routes after the config, as comments; a broken file
// is a config error naming its line.
func TestCheckListsLearnedRoutes(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, rc, rcText(state, nil, rcAccount{
		name: "md", port: 110, user: "catchall", pass: "pw", maildir: filepath.Join(dir, "{user}"),
		extra: []string{`multidrop {
    local_domains = ["example.com"]
    user "alice" {}
  }`},
	}))
	code, out, errs := runCLI(t, "check", "-f", rc)
	if code != exitOK || strings.Contains(out, "learned route") {
		t.Fatalf("check (no routes) = %d\n%s%s", code, out, errs)
	}
	a := &rcfile.Account{StateDir: state, Username: "catchall", Server: "127.0.0.1"}
	path := fetch.LearnedPath(a)
	if _, err := learned.Add(path, "list@lists.example.org", "alice", "learned 2026-12-04T19:30:00Z from m"); err != nil {
		t.Fatal(err)
	}
	if _, err := learned.Add(path, "list-id:news.example.net", "alice", ""); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "check", "-f", rc)
	want := "# account md: 2 learned routes in " + path + "\n" +
		"# learned route: list@lists.example.org -> alice (learned 2026-12-04T19:30:00Z from m)\n" +
		"# learned route: list-id:news.example.net -> alice\n"
	if code != exitOK || !strings.HasSuffix(out, want) {
		t.Fatalf("check = %d\n%s%s\nwant it to end in\n%s", code, out, errs, want)
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(b, "broken\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "check", "-f", rc)
	if code != exitConfig || !strings.Contains(out, "# account md: learned routes: error: "+path+":5: want KEY USER") {
		t.Fatalf("check (broken file) = %d\n%s", code, out)
	}
}
