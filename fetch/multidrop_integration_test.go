package fetch

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// Multidrop end to end: a mailbox of ~200 varied messages on a real
// dovecot, fetched once through the real NewDispatcher into real targets
// (per-user Maildirs, dovecot's LMTP, procmail), lands in exactly the right
// places: every user copy once, the unroutable ones at the postmaster with
// a reason, nothing left on the server and nothing fetched twice. The
// routing table tests (deliver/route_test.go) prove the decisions; these
// prove that the decisions survive the whole pipeline (POP3 transport,
// CRLF handling, grouping per target, per-user progress, the targets' own
// address handling) for every kind of input at once.

// mdUsers are the popfetch users of the test domain. alice also owns
// sales@; the aliases file adds info → alice, bob.
var mdUsers = []string{"alice", "bob", "carol", "dave"}

// mdCase is one generated message and where it must land.
type mdCase struct {
	seq  int
	kind string
	raw  []byte
	// users that must get exactly one copy each; empty with postmaster
	// false means "delivered to nobody" (a Message-ID duplicate).
	users []string
	// postmaster must get exactly one copy too: alone (unroutable) or
	// besides users (a partial route).
	postmaster bool
	reason     string // substring the postmaster's X-Popfetch-Reason must hold
	// pair is the X-Seq of the first of two copies of one Message-ID
	// (dedupe_message_id): copies are delivered concurrently, so either
	// one may be the copy that lands; together they land exactly once.
	pair int
}

// mdBuilder assembles one message with a unique X-Seq and Message-ID.
type mdBuilder struct {
	seq    int
	header []string
	body   string
	mid    string
	subj   string // default "multidrop <seq>"
}

func (b *mdBuilder) add(f string, args ...any) { b.header = append(b.header, fmt.Sprintf(f, args...)) }

func (b *mdBuilder) bytes() []byte {
	var out bytes.Buffer
	for _, h := range b.header {
		out.WriteString(h + "\r\n")
	}
	mid := b.mid
	if mid == "" {
		mid = fmt.Sprintf("<md-%d@example.net>", b.seq)
	}
	subj := b.subj
	if subj == "" {
		subj = fmt.Sprintf("multidrop %d", b.seq)
	}
	fmt.Fprintf(&out, "Message-ID: %s\r\nX-Seq: %d\r\nSubject: %s\r\n\r\n", mid, b.seq, subj)
	out.WriteString(b.body)
	return out.Bytes()
}

// seqRE finds the X-Seq line anywhere in a stored copy: the headerless
// message carries it in its body, and targets prepend their own fields.
var seqRE = regexp.MustCompile(`(?m)^X-Seq: (\d+)\r?$`)

// mdMessages generates the test mailbox deterministically: each kind
// once, then random kinds up to n, so a failure reproduces exactly.
func mdMessages(n int) []mdCase {
	r := rand.New(rand.NewPCG(20261125, 1939))
	user := func() string { return mdUsers[r.IntN(len(mdUsers))] }
	two := func() (string, string) {
		i := r.IntN(len(mdUsers))
		j := (i + 1 + r.IntN(len(mdUsers)-1)) % len(mdUsers)
		return mdUsers[i], mdUsers[j]
	}
	body := func(seq int) string {
		var s strings.Builder
		for i := 0; i < 1+r.IntN(6); i++ {
			fmt.Fprintf(&s, "line %d of %d\r\n.dot-started line\r\nFrom at the start\r\n", i, seq)
		}
		return s.String()
	}
	sorted := func(us ...string) []string {
		us = slices.Clone(us)
		slices.Sort(us)
		return slices.Compact(us)
	}
	type gen func(seq int) []mdCase
	one := func(kind string, b *mdBuilder, users []string) []mdCase {
		return []mdCase{{seq: b.seq, kind: kind, raw: b.bytes(), users: users}}
	}
	pm := func(kind string, b *mdBuilder, reason string) []mdCase {
		return []mdCase{{seq: b.seq, kind: kind, raw: b.bytes(), postmaster: true, reason: reason}}
	}
	newB := func(seq int) *mdBuilder {
		b := &mdBuilder{seq: seq, body: body(seq)}
		b.add("Return-Path: <sender%d@example.net>", seq)
		b.add("From: Sender <sender%d@example.net>", seq)
		return b
	}
	kinds := []gen{
		func(seq int) []mdCase { // To a user, guessed from To (no envelope header)
			u := user()
			b := newB(seq)
			b.add("To: %s <%s@example.com>", strings.ToUpper(u[:1])+u[1:], u)
			return one("to", b, []string{u})
		},
		func(seq int) []mdCase { // Cc a user; To names an outsider
			u := user()
			b := newB(seq)
			b.add("To: someone@elsewhere.test")
			b.add("Cc: %s@example.com", u)
			return one("cc", b, []string{u})
		},
		func(seq int) []mdCase { // To and Cc name two users
			u, v := two()
			b := newB(seq)
			b.add("To: %s@example.com", u)
			b.add("Cc: \"Friend\" <%s@example.com>, other@elsewhere.test", v)
			return one("to+cc", b, sorted(u, v))
		},
		func(seq int) []mdCase { // Bcc: only the envelope names the user
			u := user()
			b := newB(seq)
			b.header = append([]string{fmt.Sprintf("Delivered-To: %s@example.com", u)}, b.header...)
			b.add("To: outsider@elsewhere.test")
			return one("bcc", b, []string{u})
		},
		func(seq int) []mdCase { // list mail, envelope with +detail
			u := user()
			b := newB(seq)
			b.header = append([]string{fmt.Sprintf("Delivered-To: %s+lists@example.com", u)}, b.header...)
			b.add("To: list@lists.example.org")
			b.add("List-Id: The List <list.lists.example.org>")
			return one("list", b, []string{u})
		},
		func(seq int) []mdCase { // a user's second address
			b := newB(seq)
			b.add("To: Sales <sales@example.com>")
			return one("alias-address", b, []string{"alice"})
		},
		func(seq int) []mdCase { // aliases_file: info → alice, bob
			b := newB(seq)
			b.header = append([]string{"Delivered-To: info@example.com"}, b.header...)
			b.add("To: info@example.com")
			return one("alias-file", b, []string{"alice", "bob"})
		},
		func(seq int) []mdCase { // unknown user in the envelope: authoritative, so no To guessing
			b := newB(seq)
			b.header = append([]string{"Delivered-To: mallory@example.com"}, b.header...)
			b.add("To: alice@example.com")
			return pm("unknown", b, "unknown user mallory@example.com")
		},
		func(seq int) []mdCase { // only non-local addresses, no envelope
			b := newB(seq)
			b.add("To: x@elsewhere.test")
			return pm("non-local", b, "no local recipient found")
		},
		func(seq int) []mdCase { // headerless (CVE-2005-4348)
			return []mdCase{{seq: seq, kind: "headerless", postmaster: true, reason: "no headers",
				raw: fmt.Appendf(nil, "\r\nX-Seq: %d\r\nno header section at all\r\n", seq)}}
		},
		func(seq int) []mdCase { // the ISP stored two copies of one message for one user
			u := user()
			var out []mdCase
			first := newB(seq)
			for i := range 2 {
				// The same message (author's fields and body); only
				// the provider's fields and X-Seq differ.
				b := &mdBuilder{seq: seq + i, body: first.body, header: slices.Clone(first.header)}
				b.mid = fmt.Sprintf("<dup-%d@example.net>", seq)
				b.subj = fmt.Sprintf("dup %d", seq)
				b.header = append([]string{fmt.Sprintf("Delivered-To: %s@example.com", u)}, b.header...)
				b.add("To: %s@example.com", u)
				c := mdCase{seq: seq + i, kind: "duplicate", raw: b.bytes(), users: []string{u}, pair: seq}
				if i == 1 {
					c.users = nil // dedupe_message_id: the second copy goes nowhere
				}
				out = append(out, c)
			}
			return out
		},
		func(seq int) []mdCase { // forged lower Delivered-To below the provider's Received
			b := newB(seq)
			b.header = append([]string{"Delivered-To: bob@example.com",
				"Received: from mx.sender.test by mx.isp.example with ESMTP id 1; Wed, 25 Nov 2026 10:00:00 +0000",
				"Delivered-To: root@example.com", "Delivered-To: carol@example.com"}, b.header...)
			b.add("To: whoever@elsewhere.test")
			return one("forged-envelope", b, []string{"bob"})
		},
		func(seq int) []mdCase { // mixed case and +detail, in the envelope and in To
			u, v := two()
			b := newB(seq)
			if r.IntN(2) == 0 {
				b.add("To: %s+Work@Example.COM, %s@EXAMPLE.com", strings.ToUpper(u), strings.ToUpper(v[:1])+v[1:])
				return one("case+detail", b, sorted(u, v))
			}
			b.header = append([]string{fmt.Sprintf("Delivered-To: %s+Tag@EXAMPLE.Com", strings.ToUpper(u))}, b.header...)
			b.add("To: %s@example.com", v) // not consulted: the envelope named a local user
			return one("case+detail", b, []string{u})
		},
		func(seq int) []mdCase { // 300 recipients: three users hidden among strangers, and an unknown one (partial route)
			b := newB(seq)
			var rs []string
			for i := range 296 {
				rs = append(rs, fmt.Sprintf("r%d@elsewhere.test", i))
			}
			rs = append(rs, "ghost@example.com")
			rs = slices.Insert(rs, 10, "alice@example.com")
			rs = slices.Insert(rs, 150, "\"Bob\" <BOB@example.com>")
			rs = slices.Insert(rs, 290, "carol+x@example.com")
			b.add("To: %s", strings.Join(rs, ",\r\n\t"))
			c := one("300-recipients", b, []string{"alice", "bob", "carol"})
			c[0].postmaster, c[0].reason = true, "partly routed (to alice, bob, carol); not routed: unknown user ghost@example.com"
			return c
		},
		func(seq int) []mdCase { // an encoded-word is not an address (RFC 2047 §5)
			b := newB(seq)
			b.add("To: =?utf-8?q?alice?=@example.com")
			return pm("encoded-word", b, "unknown user =?utf-8?q?alice?=@example.com")
		},
	}
	var out []mdCase
	seq := 1
	for i := 0; len(out) < n; i++ {
		k := i
		if i >= len(kinds) {
			k = r.IntN(len(kinds))
		}
		cs := kinds[k](seq)
		out = append(out, cs...)
		seq += len(cs)
	}
	return out
}

// mdAccount is the multidrop account of the integration tests.
func mdAccount(t *testing.T, srv *dovecottest.Server, mb *dovecottest.Mailbox, mode rcfile.TLSMode) *rcfile.Account {
	t.Helper()
	a := dovecotAccount(t, srv, mb, mode)
	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliases, []byte("# test aliases\ninfo: alice, bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.Postmaster = &rcfile.Destination{Maildir: filepath.Join(dir, "postmaster")}
	a.Multidrop = testMultidrop(mdUser("alice", "alice", "sales"), mdUser("bob", "bob"), mdUser("carol", "carol"), mdUser("dave", "dave"))
	a.Multidrop.AliasesFile = aliases
	a.Multidrop.DedupeMessageID = true
	return a
}

// mdCopy is one stored copy of a test message.
type mdCopy struct {
	seq    string
	reason string
}

// readCopies reads every message file of a Maildir (new/ and cur/); a
// missing Maildir holds nothing.
func readCopies(t *testing.T, maildir string) []mdCopy {
	t.Helper()
	return copiesOf(t, delivertest.MaildirMessages(t, maildir))
}

func copiesOf(t *testing.T, raws [][]byte) []mdCopy {
	t.Helper()
	out := make([]mdCopy, 0, len(raws))
	for _, b := range raws {
		m := seqRE.FindSubmatch(b)
		if m == nil {
			t.Fatalf("stored copy without X-Seq:\n%.400s", b)
		}
		out = append(out, mdCopy{seq: string(m[1]), reason: headerValue(b, "X-Popfetch-Reason")})
	}
	return out
}

// placed maps X-Seq to the destinations ("alice", "postmaster") holding a
// copy, one entry per copy, so duplicates show.
type placed struct {
	at     map[string][]string
	reason map[string]string // postmaster copies: X-Seq → X-Popfetch-Reason
}

func newPlaced() *placed { return &placed{at: map[string][]string{}, reason: map[string]string{}} }

func (p *placed) add(dest string, cs []mdCopy) {
	for _, c := range cs {
		p.at[c.seq] = append(p.at[c.seq], dest)
		if dest == "postmaster" {
			p.reason[c.seq] = c.reason
		}
	}
}

// check compares where every case landed with where it must land, and
// that nothing else arrived anywhere.
func (p *placed) check(t *testing.T, cases []mdCase) {
	t.Helper()
	known := map[string]bool{}
	bad := 0
	pairs := map[int][]string{} // first X-Seq → where both copies landed
	pairWant := map[int][]string{}
	for _, c := range cases {
		seq := fmt.Sprint(c.seq)
		known[seq] = true
		if c.pair != 0 {
			pairs[c.pair] = append(pairs[c.pair], p.at[seq]...)
			if c.seq == c.pair {
				pairWant[c.pair] = c.users
			}
			continue
		}
		want := slices.Clone(c.users)
		if c.postmaster {
			want = append(want, "postmaster")
			slices.Sort(want)
		}
		got := slices.Clone(p.at[seq])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			if bad++; bad <= 20 {
				why := ""
				if r := p.reason[seq]; r != "" {
					why = " (postmaster reason: " + r + ")"
				}
				t.Errorf("message %d (%s) landed at %v%s; want %v (each exactly once)", c.seq, c.kind, got, why, want)
			}
			continue
		}
		if c.postmaster && !strings.Contains(p.reason[seq], c.reason) {
			t.Errorf("message %d (%s): X-Popfetch-Reason %q; want it to mention %q", c.seq, c.kind, p.reason[seq], c.reason)
		}
		if !c.postmaster && p.reason[seq] != "" {
			t.Errorf("message %d (%s): a user copy carries X-Popfetch-Reason %q", c.seq, c.kind, p.reason[seq])
		}
	}
	for first, got := range pairs {
		slices.Sort(got)
		if want := pairWant[first]; !slices.Equal(got, want) {
			if bad++; bad <= 20 {
				t.Errorf("messages %d and %d (one Message-ID) landed at %v together; want %v exactly once", first, first+1, got, want)
			}
		}
	}
	if bad > 20 {
		t.Errorf("... and %d more misplaced messages", bad-20)
	}
	for seq, dests := range p.at {
		if !known[seq] {
			t.Errorf("unexpected message X-Seq %s at %v", seq, dests)
		}
	}
}

// onlyDirs fails if dir holds entries other than names: a copy for a
// user that does not exist would show up as a stray directory.
func onlyDirs(t *testing.T, dir string, names []string) {
	t.Helper()
	for _, n := range delivertest.Names(t, dir) {
		if !slices.Contains(names, n) {
			t.Errorf("%s: unexpected entry %s", dir, n)
		}
	}
}

// pollAll loads cases into mb, polls once and checks the POP3 side of the
// contract: everything fetched, delivered and deleted, nothing failed, and
// a second poll finds nothing.
func pollAll(t *testing.T, srv *dovecottest.Server, mb *dovecottest.Mailbox, a *rcfile.Account, cases []mdCase) {
	t.Helper()
	for _, c := range cases {
		mb.Put(t, c.raw)
	}
	if n := mb.Count(t); n != len(cases) {
		t.Fatalf("server holds %d messages; want %d", n, len(cases))
	}
	res := (&Poller{}).Poll(context.Background(), a)
	n := len(cases)
	if res.Err != nil || res.Messages != n || res.New != n || res.Delivered != n || res.Deleted != n || res.Failed != 0 {
		t.Fatalf("Poll = %+v; want %d new, delivered and deleted\n%s", res, n, srv.Log(t))
	}
	if c := mb.Count(t); c != 0 {
		t.Fatalf("server still holds %d messages after the poll", c)
	}
	if res := (&Poller{}).Poll(context.Background(), a); res.Err != nil || res.Messages != 0 || res.New != 0 || res.Delivered != 0 {
		t.Fatalf("second Poll = %+v; want nothing", res)
	}
}

// requireProcmail skips when /usr/bin/procmail is missing, except where
// the integration tests are required (CI=true or
// POPFETCH_REQUIRE_DOVECOT=1, as for dovecot and deliver's procmailPath):
// there a missing procmail fails, so CI cannot pass by skipping them.
func requireProcmail(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/procmail"); err != nil {
		testutil.Unavailable(t, fmt.Sprintf("procmail not installed (apt-get install procmail): %v", err))
	}
}

// procmailRC writes a procmailrc delivering to <dir>/procmail/$USER/Maildir/
// and creates the per-user parents (procmail makes only the last level).
func procmailRC(t *testing.T, dir string) string {
	t.Helper()
	requireProcmail(t)
	for _, u := range mdUsers {
		if err := os.MkdirAll(filepath.Join(dir, "procmail", u), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rc := filepath.Join(dir, "procmailrc")
	// The trailing slash makes procmail deliver in Maildir format.
	src := fmt.Sprintf("DEFAULT=%s/procmail/$USER/Maildir/\n", dir)
	if err := os.WriteFile(rc, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return rc
}

// procmailArgv is the MDA command line. With -m, procmail takes VAR=value
// assignments before the rcfile; arguments after it become $1, $2, ... (a
// "USER={user}" there would not set USER).
func procmailArgv(rc string) []string {
	return []string{"/usr/bin/procmail", "-m", "USER={user}", rc}
}

func TestMultidropIntegration(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{LMTP: true})
	cases := mdMessages(200)
	kinds := map[string]int{}
	for _, c := range cases {
		kinds[c.kind]++
	}
	t.Logf("%d messages: %v", len(cases), kinds)

	t.Run("maildir", func(t *testing.T) {
		mb := srv.AddUser(t, "catchall-maildir", "pw")
		a := mdAccount(t, srv, mb, rcfile.TLSNone)
		vmail := filepath.Join(t.TempDir(), "vmail")
		a.Deliver = rcfile.Destination{Maildir: filepath.Join(vmail, "{user}", "Maildir")}
		pollAll(t, srv, mb, a, cases)
		p := newPlaced()
		for _, u := range mdUsers {
			p.add(u, readCopies(t, filepath.Join(vmail, u, "Maildir")))
		}
		p.add("postmaster", readCopies(t, a.Postmaster.Maildir))
		p.check(t, cases)
		onlyDirs(t, vmail, mdUsers)
	})

	// LMTP over STLS on the POP3 side: the one run with TLS.
	t.Run("lmtp", func(t *testing.T) {
		boxes := map[string]*dovecottest.Mailbox{}
		for _, u := range mdUsers {
			boxes[u] = srv.AddUser(t, u, "pw-"+u)
		}
		mb := srv.AddUser(t, "catchall-lmtp", "pw")
		a := mdAccount(t, srv, mb, rcfile.TLSStartTLS)
		a.Deliver = rcfile.Destination{SMTP: &rcfile.SMTP{Server: srv.LMTPSocket, LMTP: true, Helo: "popfetch.test"}}
		pollAll(t, srv, mb, a, cases)
		p := newPlaced()
		for u, box := range boxes {
			p.add(u, copiesOf(t, box.Messages(t)))
		}
		p.add("postmaster", readCopies(t, a.Postmaster.Maildir))
		p.check(t, cases)
	})

	t.Run("procmail", func(t *testing.T) {
		dir := t.TempDir()
		rc := procmailRC(t, dir)
		mb := srv.AddUser(t, "catchall-mda", "pw")
		a := mdAccount(t, srv, mb, rcfile.TLSNone)
		a.Deliver = rcfile.Destination{MDA: procmailArgv(rc)}
		pollAll(t, srv, mb, a, cases)
		p := newPlaced()
		for _, u := range mdUsers {
			p.add(u, readCopies(t, filepath.Join(dir, "procmail", u, "Maildir")))
		}
		p.add("postmaster", readCopies(t, a.Postmaster.Maildir))
		p.check(t, cases)
		onlyDirs(t, filepath.Join(dir, "procmail"), mdUsers)
	})
}

// faultMDA is a stub MDA that runs the real procmail for every user but
// those given a fault (mda.Fail), such as bob's exit status.
func faultMDA(t *testing.T, rc string) *delivertest.MDA {
	t.Helper()
	return delivertest.NewMDA(t, "/usr/bin/procmail", "-m", "USER={user}", rc)
}

func TestMultidropIntegrationFaults(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{LMTP: true})
	msg := func(seq int, to string) []byte {
		return fmt.Appendf(nil, "Return-Path: <s@example.net>\r\nFrom: s@example.net\r\nTo: %s\r\nMessage-ID: <fault-%d@example.net>\r\nX-Seq: %d\r\n\r\nbody %d\r\n", to, seq, seq, seq)
	}
	count := func(t *testing.T, maildir string) map[string]int {
		t.Helper()
		n := map[string]int{}
		for _, c := range readCopies(t, maildir) {
			n[c.seq]++
		}
		return n
	}

	// MDA exit 75 (EX_TEMPFAIL) for bob: the message stays on the server,
	// alice and carol keep the copy they got, and after the fix bob gets
	// his without anyone getting a second one.
	t.Run("mda-tempfail", func(t *testing.T) {
		dir := t.TempDir()
		mda := faultMDA(t, procmailRC(t, dir))
		mda.Fail(t, "bob", "exit 75")
		mb := srv.AddUser(t, "catchall-tempfail", "pw")
		mb.Put(t, msg(1, "alice@example.com, bob@example.com, carol@example.com"), msg(2, "alice@example.com"))
		a := mdAccount(t, srv, mb, rcfile.TLSNone)
		a.Deliver = rcfile.Destination{MDA: mda.Argv("{user}")}
		res := (&Poller{}).Poll(context.Background(), a)
		if res.Err != nil || res.Failed != 1 || res.Delivered != 1 || mb.Count(t) != 1 {
			t.Fatalf("Poll with bob failing = %+v, server %d; want message 1 kept", res, mb.Count(t))
		}
		box := func(u string) string { return filepath.Join(dir, "procmail", u, "Maildir") }
		if a, b, c := count(t, box("alice")), count(t, box("bob")), count(t, box("carol")); a["1"] != 1 || a["2"] != 1 || c["1"] != 1 || len(b) != 0 {
			t.Fatalf("after the fault: alice %v, bob %v, carol %v", a, b, c)
		}
		mda.Fix(t, "bob")
		res = (&Poller{}).Poll(context.Background(), a)
		if res.Err != nil || res.Failed != 0 || res.Delivered != 1 || mb.Count(t) != 0 {
			t.Fatalf("Poll after the fix = %+v, server %d", res, mb.Count(t))
		}
		for u, want := range map[string]map[string]int{"alice": {"1": 1, "2": 1}, "bob": {"1": 1}, "carol": {"1": 1}, "dave": {}} {
			if got := count(t, box(u)); !maps.Equal(got, want) {
				t.Errorf("%s holds %v; want %v (one copy each)", u, got, want)
			}
		}
		if got := count(t, a.Postmaster.Maildir); len(got) != 0 {
			t.Errorf("postmaster got %v; a temporary failure is not the postmaster's", got)
		}
	})

	// MDA exit 1 for bob is permanent: the postmaster gets the message
	// with the reason, the others their copies, and it is deleted.
	t.Run("mda-permanent", func(t *testing.T) {
		dir := t.TempDir()
		mda := faultMDA(t, procmailRC(t, dir))
		mda.Fail(t, "bob", "exit 1")
		mb := srv.AddUser(t, "catchall-permfail", "pw")
		mb.Put(t, msg(1, "alice@example.com, bob@example.com, carol@example.com"))
		a := mdAccount(t, srv, mb, rcfile.TLSNone)
		a.Deliver = rcfile.Destination{MDA: mda.Argv("{user}")}
		res := (&Poller{}).Poll(context.Background(), a)
		if res.Err != nil || res.Failed != 0 || res.Delivered != 1 || res.Deleted != 1 || mb.Count(t) != 0 {
			t.Fatalf("Poll = %+v, server %d; want delivered and deleted", res, mb.Count(t))
		}
		for u, want := range map[string]int{"alice": 1, "bob": 0, "carol": 1} {
			if got := count(t, filepath.Join(dir, "procmail", u, "Maildir"))["1"]; got != want {
				t.Errorf("%s holds %d copies; want %d", u, got, want)
			}
		}
		pm := readCopies(t, a.Postmaster.Maildir)
		if len(pm) != 1 || !strings.Contains(pm[0].reason, "bob: MDA exit 1") {
			t.Fatalf("postmaster got %+v; want one copy with reason \"bob: MDA exit 1\"", pm)
		}
	})

	// LMTP refuses a user popfetch routes but dovecot does not know (550
	// on RCPT): that user's copy goes to the postmaster with the reply.
	t.Run("lmtp-unknown-rcpt", func(t *testing.T) {
		alice := srv.AddUser(t, "alice", "pw")
		bob := srv.AddUser(t, "bob", "pw")
		// dave is a popfetch user but has no dovecot account.
		mb := srv.AddUser(t, "catchall-lmtpfail", "pw")
		mb.Put(t, msg(1, "alice@example.com, dave@example.com, bob@example.com"))
		a := mdAccount(t, srv, mb, rcfile.TLSNone)
		a.Deliver = rcfile.Destination{SMTP: &rcfile.SMTP{Server: srv.LMTPSocket, LMTP: true, Helo: "popfetch.test"}}
		res := (&Poller{}).Poll(context.Background(), a)
		if res.Err != nil || res.Failed != 0 || res.Delivered != 1 || res.Deleted != 1 || mb.Count(t) != 0 {
			t.Fatalf("Poll = %+v, server %d; want delivered and deleted\n%s", res, mb.Count(t), srv.Log(t))
		}
		for name, box := range map[string]*dovecottest.Mailbox{"alice": alice, "bob": bob} {
			if cs := copiesOf(t, box.Messages(t)); len(cs) != 1 || cs[0].seq != "1" {
				t.Errorf("%s holds %+v; want message 1 once", name, cs)
			}
		}
		pm := readCopies(t, a.Postmaster.Maildir)
		if len(pm) != 1 || !strings.Contains(pm[0].reason, "dave: LMTP 550") {
			t.Fatalf("postmaster got %+v; want one copy with reason \"dave: LMTP 550 ...\"", pm)
		}
		t.Logf("postmaster reason: %s", pm[0].reason)
	})
}
