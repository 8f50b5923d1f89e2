package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/ldapdir/slapdtest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// ldapMsg is message seq for the envelope recipient rcpt (Delivered-To,
// the default envelope_header); To names nobody local, so only the
// envelope, and so the directory, decides.
func ldapMsg(seq int, rcpt string) []byte {
	return fmt.Appendf(nil, "Delivered-To: %s\r\nFrom: s@example.net\r\nTo: undisclosed-recipients:;\r\nMessage-ID: <ldap-%d@example.net>\r\nX-Seq: %d\r\n\r\nbody %d\r\n",
		rcpt, seq, seq, seq)
}

// TestDaemonLDAPDirectory: `popfetch run` with an ldap block as an
// operator writes it (ldaps with the directory's own CA in ca_file, a
// read-only bind with password_file) routes a catch-all mailbox on a real
// dovecot by a real slapd; `popfetch status` shows the directory; a user
// added in LDAP is routed at once by `popfetch now` (which loads the
// directory afresh); while slapd is down `popfetch now` routes with the
// last good copy and status says so; after slapd is back the next `now`
// loads it again. `popfetch check --connect` prints what the directory
// holds.
func TestDaemonLDAPDirectory(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, slapdtest.Options{LDIF: slapdtest.ADUser("alice", "Alice Adams", 512, "alice@example.com",
		"SMTP:alice@example.com", "smtp:a.adams@example.com") +
		slapdtest.ADUser("bob", "Bob Brown", 512, "bob@example.com") +
		slapdtest.ADUser("dave", "Dave Disabled", 514, "dave@example.com") +
		slapdtest.ADGroup("Sales", "sales@example.com", slapdtest.ADUserDN("Alice Adams"), slapdtest.ADUserDN("Bob Brown"))})
	srv := dovecottest.Start(t, dovecottest.Options{})
	mb := srv.AddUser(t, "office", "pw-office")
	mb.Put(t, ldapMsg(1, "a.adams@example.com"), ldapMsg(2, "sales@example.com"))

	dir := t.TempDir()
	vmail := filepath.Join(dir, "vmail")
	box := func(u string) string { return filepath.Join(vmail, u, "Maildir") }
	postmaster := filepath.Join(dir, "postmaster")
	pwFile := filepath.Join(dir, "ldap.password")
	writeFile(t, pwFile, s.Password()+"\n") // 0600
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
		name: "office", port: srv.PlainPort, user: mb.User, pass: mb.Pass,
		deliver: fmt.Sprintf("maildir = %q", filepath.Join(vmail, "{user}", "Maildir")),
		extra: []string{
			fmt.Sprintf("postmaster { maildir = %q }", postmaster),
			`multidrop {`,
			`  local_domains = ["example.com"]`,
			`  ldap {`,
			fmt.Sprintf("    url           = %q", s.URL()),
			fmt.Sprintf("    ca_file       = %q", s.CAFile),
			fmt.Sprintf("    bind_dn       = %q", s.BindDN()),
			fmt.Sprintf("    password_file = %q", pwFile),
			fmt.Sprintf("    base_dn       = %q", s.BaseDN()),
			`    groups        = true`,
			// Only a start, SIGHUP or `popfetch now` loads it in this test.
			`    refresh       = "1h"`,
			`    timeout       = "5s"`,
			`  }`,
			`}`,
		},
	}))

	// check --connect: the counts line and a sample (users sorted, then
	// groups); the disabled dave is not a user.
	r := daemonCLI(t, rc, "check", "--connect")
	wantCheck := []string{
		fmt.Sprintf("office: directory %s: 2 users, 3 addresses, 1 groups\n", s.URL()),
		"  alice: alice@example.com, a.adams@example.com\n",
		"  bob: bob@example.com\n",
		"  group sales@example.com: alice, bob\n",
	}
	for _, w := range wantCheck {
		if r.code != 0 || !strings.Contains(r.stdout, w) {
			t.Errorf("popfetch check --connect = exit %d; want 0 and %q in:\n%s%s", r.code, w, r.stdout, r.stderr)
		}
	}

	d := startDaemon(t, rc)
	waitMaildir(t, box("alice"), 2, 10*time.Second)
	waitMaildir(t, box("bob"), 1, 10*time.Second)
	waitFor(t, 10*time.Second, "the first poll to end", func() bool { return len(d.log.lines("msg=\"poll done\"", "account=office")) > 0 })

	dirLine := func() string {
		t.Helper()
		r := daemonCLI(t, rc, "status")
		if r.code != 0 {
			t.Fatalf("popfetch status = exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, ln := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(ln, "office: directory ") {
				return ln
			}
		}
		t.Fatalf("popfetch status has no directory line:\n%s", r.stdout)
		return ""
	}
	loadedRE := regexp.MustCompile(`^office: directory ldap ` + regexp.QuoteMeta(s.URL()) +
		`: (\d+) users, (\d+) addresses, 1 groups, loaded \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)$`)
	if ln := dirLine(); !loadedRE.MatchString(ln) || !strings.Contains(ln, ": 2 users, 3 addresses,") {
		t.Errorf("status directory line %q; want 2 users, 3 addresses, loaded", ln)
	}

	// A new user: `popfetch now` loads the directory again and routes.
	s.Add(t, slapdtest.ADUser("gina", "Gina Green", 512, "gina@example.com"))
	mb.Put(t, ldapMsg(3, "gina@example.com"))
	if r := daemonCLI(t, rc, "now"); r.code != 0 || !strings.Contains(r.stdout, "office: 1 new, 1 delivered") {
		t.Fatalf("popfetch now = exit %d; want 0 and \"office: 1 new, 1 delivered\"\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := maildirCount(t, box("gina")); n != 1 {
		t.Errorf("gina's Maildir holds %d messages when `popfetch now` returned; want 1", n)
	}
	if ln := dirLine(); !strings.Contains(ln, ": 3 users, 4 addresses,") {
		t.Errorf("status directory line after the new user %q; want 3 users, 4 addresses", ln)
	}

	// slapd down: the last good copy routes, status says so.
	s.Stop(t)
	mb.Put(t, ldapMsg(4, "bob@example.com"))
	start := time.Now()
	r = daemonCLI(t, rc, "now")
	took := time.Since(start)
	if r.code != 0 || !strings.Contains(r.stdout, "office: 1 new, 1 delivered") {
		t.Fatalf("popfetch now with slapd down = exit %d; want 0 and the message routed with the last good copy\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("popfetch now with slapd stopped (connection refused) took %v", took)
	downRE := regexp.MustCompile(`^office: directory ldap ` + regexp.QuoteMeta(s.URL()) +
		` UNAVAILABLE since [-0-9: ]+ \(.*connection refused\); using the copy loaded [-0-9: ]+ \(3 users, 4 addresses\), grace until [-0-9: ]+$`)
	if ln := dirLine(); !downRE.MatchString(ln) {
		t.Errorf("status directory line with slapd down %q; want UNAVAILABLE, using the copy", ln)
	}
	if n := len(d.log.lines("level=WARN", "directory unavailable; routing with the last good copy", "account=office")); n != 1 {
		t.Errorf("%d Warn lines for the outage; want 1\n%s", n, d.log.String())
	}

	// Back: the next `now` loads it again.
	s.Restart(t)
	if r := daemonCLI(t, rc, "now"); r.code != 0 {
		t.Fatalf("popfetch now after the restart = exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if ln := dirLine(); !loadedRE.MatchString(ln) || !strings.Contains(ln, ": 3 users,") {
		t.Errorf("status directory line after the restart %q; want loaded, 3 users", ln)
	}
	if n := len(d.log.lines("directory available again", "account=office")); n != 1 {
		t.Errorf("%d \"directory available again\" lines; want 1", n)
	}

	for u, want := range map[string]map[int]int{
		"alice": {1: 1, 2: 1}, "bob": {2: 1, 4: 1}, "gina": {3: 1},
	} {
		got := seqCounts(t, box(u))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s holds %v; want %v (X-Seq: copies)", u, got, want)
		}
	}
	if got := maildirFiles(t, postmaster); len(got) != 0 {
		t.Errorf("postmaster got %v; nothing was unknown, and an outage is not the postmaster's", got)
	}
	if n := mb.Count(t); n != 0 {
		t.Errorf("server holds %d messages; want 0", n)
	}
}
