package fetch

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// TestDirectoryShrinkNotTaken: a refresh that returns 1 user where the last
// good copy had 100 (an ACL change, a wrong OU moved, a domain controller
// answering from a half-replicated partition) is taken as the truth at
// once: the mail of the 99 others goes to the postmaster as "unknown
// user". That is the outcome the directory design forbids for an outage
// ("never route to the postmaster because the directory was down"); a
// directory that lost 99% of its users is far likelier broken than an
// office that fired 99 of 100 people between two refreshes. Wanted: such
// a load is treated like a failed one (the last good copy serves within
// grace, a Warn says why), unless an operator's act (SIGHUP, popfetch
// now: FreshDirectory) confirms it.
func TestDirectoryShrinkNotTaken(t *testing.T) {
	r := newLDAPRig(t)
	big := map[string][]string{}
	for i := range 100 {
		big[fmt.Sprintf("u%d", i)] = []string{fmt.Sprintf("u%d@example.com", i)}
	}
	r.dir.set(func(f *fakeLDAP) { f.users = big })
	if res := r.poll(t, PollOptions{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.dir.set(func(f *fakeLDAP) { f.users = map[string][]string{"u0": {"u0@example.com"}} })
	r.clk.add(6 * time.Minute)
	r.add(domainMsg("m1", "To: u50@example.com\nMessage-ID: <m1@x>"))
	res := r.poll(t, PollOptions{})
	t.Logf("poll: err %v, directory %+v", res.Err, res.Directory)
	if got := copies(r.pm, "postmaster"); got != "" {
		t.Errorf("after the directory shrank from 100 users to 1 on a timed refresh, u50's mail went to the postmaster (%q)", got)
	}
}

// ldapEcho is a TLS LDAP server on loopback that records the bind
// passwords it receives and answers as told.
type ldapEcho struct {
	addr   string
	mu     sync.Mutex
	binds  []string
	answer func(tag int, bindPW string) (code uint16, diag string)
}

func startLDAPEcho(t *testing.T, answer func(tag int, bindPW string) (uint16, string)) (*ldapEcho, string) {
	t.Helper()
	caPEM, serverTLS, _ := pop3test.GenerateCert(t, "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	e := &ldapEcho{addr: ln.Addr().String(), answer: answer}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.serve(tls.Server(c, serverTLS))
		}
	}()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return e, ca
}

func (e *ldapEcho) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	pw := ""
	for {
		p, err := ber.ReadPacket(r)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		op := p.Children[1]
		tag := int(op.Tag)
		var respTag ber.Tag
		switch tag {
		case ldap.ApplicationBindRequest:
			if len(op.Children) >= 3 {
				pw = op.Children[2].Data.String()
			}
			e.mu.Lock()
			e.binds = append(e.binds, pw)
			e.mu.Unlock()
			respTag = ldap.ApplicationBindResponse
		case ldap.ApplicationSearchRequest:
			respTag = ldap.ApplicationSearchResultDone
		default:
			return
		}
		code, diag := e.answer(tag, pw)
		if tag == ldap.ApplicationSearchRequest && code == 0 {
			c.Write(userEntryPacket(id, "CN=Dave,DC=example,DC=com", "dave", "dave@example.com").Bytes())
		}
		c.Write(ldapResult(id, respTag, code, diag).Bytes())
	}
}

func (e *ldapEcho) bindPasswords() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.binds...)
}

func ldapResult(id int64, appTag ber.Tag, code uint16, diag string) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appTag, nil, "Response")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(code), "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	p.AppendChild(op)
	return p
}

func userEntryPacket(id int64, dn, sam, mail string) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "Entry")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "objectName"))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attributes")
	for _, kv := range [][2]string{{"sAMAccountName", sam}, {"mail", mail}} {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attribute")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, kv[0], "type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, kv[1], "value"))
		a.AppendChild(set)
		list.AppendChild(a)
	}
	op.AppendChild(list)
	p.AppendChild(op)
	return p
}

// secretForms are the spellings of pw that must appear nowhere.
func secretForms(pw string) []string {
	q := strconv.Quote(pw)
	j, _ := json.Marshal(pw)
	return []string{pw, q[1 : len(q)-1], string(j[1 : len(j)-1]), base64.StdEncoding.EncodeToString([]byte(pw)),
		url.QueryEscape(pw), fmt.Sprintf("%x", pw)}
}

// TestDirectorySecretNowhere: the bind password, from a password_file, never
// shows in the poll's error, its DirectoryState (what `popfetch status`
// prints), the Result as JSON, or the log at Debug, in any spelling our
// own code could produce, while the server echoes it (raw and quoted) in
// its diagnostic for a refused bind and for a search error after a good
// bind. The password_file is re-read at every load (a rotated password
// is used without a restart).
func TestDirectorySecretNowhere(t *testing.T) {
	pw1, pw2 := "Pa55\"w\\ord-One\t", "second-Pa55word-2"
	mode := "bind"
	var mu sync.Mutex
	srv, ca := startLDAPEcho(t, func(tag int, bindPW string) (uint16, string) {
		mu.Lock()
		defer mu.Unlock()
		echo := fmt.Sprintf("you sent %s, quoted %q", bindPW, bindPW)
		switch {
		case mode == "bind" && tag == ldap.ApplicationBindRequest:
			return ldap.LDAPResultInvalidCredentials, echo
		case mode == "search" && tag == ldap.ApplicationSearchRequest:
			return ldap.LDAPResultOperationsError, echo
		}
		return 0, ""
	})
	r := newLDAPRig(t)
	logs := &testutil.SyncBuffer{}
	r.p.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.p.LoadDirectory = nil // the real client
	pwFile := filepath.Join(t.TempDir(), "ldap.pw")
	if err := os.WriteFile(pwFile, []byte(pw1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.a.Multidrop.LDAP.URL = "ldaps://" + srv.addr
	r.a.Multidrop.LDAP.CAFile = ca
	r.a.Multidrop.LDAP.Timeout = 5 * time.Second
	r.a.Multidrop.LDAP.Password = rcfile.Password{File: pwFile}
	var outputs []string
	for _, m := range []string{"bind", "search"} {
		mu.Lock()
		mode = m
		mu.Unlock()
		res := r.poll(t, PollOptions{FreshDirectory: true})
		if res.Err == nil {
			t.Fatalf("%s error: the poll succeeded", m)
		}
		j, _ := json.Marshal(res)
		outputs = append(outputs, res.Err.Error(), string(j), fmt.Sprintf("%+v %#v", res.Directory, res.Directory))
	}
	// Rotate the password: the next load binds with the new one.
	if err := os.WriteFile(pwFile, []byte(pw2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	mode = "ok"
	mu.Unlock()
	res := r.poll(t, PollOptions{FreshDirectory: true})
	if binds := srv.bindPasswords(); len(binds) == 0 || binds[len(binds)-1] != pw2 {
		t.Errorf("after the password_file changed the bind used %q", binds[len(binds)-1])
	}
	j, _ := json.Marshal(res)
	outputs = append(outputs, string(j), logs.String())
	for _, out := range outputs {
		for _, pw := range []string{pw1, pw2} {
			for _, form := range secretForms(pw) {
				if strings.Contains(out, form) {
					t.Errorf("the password appears as %q in:\n%s", form, out)
				}
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("first error: %s", outputs[0])
}

// TestDirectoryGraceChangeKeepsCopy: the directory is down and the admin
// raises grace (or timeout, or refresh) and reloads, precisely to keep
// mail flowing. The cache compares the whole ldap block (rcfile.LDAP.Same),
// so the change drops the last good copy: with the server still down
// the poll has no copy and the mail stops. Settings that do not change
// what the directory holds (refresh, grace, timeout; also the password
// source and ca_file) should keep the copy.
func TestDirectoryGraceChangeKeepsCopy(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(l *rcfile.LDAP)
	}{
		{"grace", func(l *rcfile.LDAP) { l.Grace = 48 * time.Hour }},
		{"timeout", func(l *rcfile.LDAP) { l.Timeout = time.Minute }},
		{"refresh", func(l *rcfile.LDAP) { l.Refresh = 10 * time.Minute }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLDAPRig(t)
			if res := r.poll(t, PollOptions{}); res.Err != nil {
				t.Fatal(res.Err)
			}
			r.dir.set(func(f *fakeLDAP) { f.err = fmt.Errorf("dial tcp: connection refused") })
			r.clk.add(10 * time.Minute)
			tc.edit(r.a.Multidrop.LDAP)
			r.add(domainMsg("m1", "To: dave@example.com\nMessage-ID: <m1@x>"))
			res := r.poll(t, PollOptions{})
			if res.Err != nil || copies(r.users, "dave") != "m1" {
				t.Errorf("after changing %s during an outage: err %v, dave got %q", tc.name, res.Err, copies(r.users, "dave"))
			}
		})
	}
}
