//go:build linux

package deliver

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// dovecot sees a folder popfetch created as a mailbox: doveadm (run
// against the private instance's config) lists Lists.dev and finds the
// copy in it, with the Maildir created for the user and given to the
// mail user as a {user} template does.
func TestMaildirFolderDovecot(t *testing.T) {
	if _, err := exec.LookPath("doveadm"); err != nil {
		if dovecottest.Required() {
			t.Fatal("doveadm:", err)
		}
		t.Skip("doveadm:", err)
	}
	srv := dovecottest.Start(t, dovecottest.Options{})
	srv.AddUser(t, "ann", "secret")
	uid, gid, err := dovecottest.MailUser()
	if err != nil {
		t.Skip(err)
	}
	mailUser := func(name string) (*user.User, error) {
		return &user.User{Username: name, Uid: strconv.Itoa(uid), Gid: strconv.Itoa(gid)}, nil
	}
	d := NewMaildir(filepath.Join(srv.Dir, "mail", "{user}", "Maildir"), MaildirOptions{
		LocalHost: "h", Folder: "Lists.dev", asRoot: true, lookupUser: mailUser})
	closeAtEnd(t, d)
	m := smtpMsg("From: a@example.org\r\nSubject: folder test\r\n\r\nbody\r\n")
	checkResults(t, d.Deliver(context.Background(), m, "", []Recipient{{User: "ann"}}, nil), "")

	doveadm := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("doveadm", append([]string{"-c", filepath.Join(srv.Dir, "dovecot.conf")}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+srv.Dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("doveadm %s: %v\n%s\n%s", strings.Join(args, " "), err, out, srv.Log(t))
		}
		return string(out)
	}
	list := doveadm("mailbox", "list", "-u", "ann")
	t.Logf("mailbox list: %q", list)
	names := strings.Fields(list)
	if !slices.Contains(names, "Lists.dev") || !slices.Contains(names, "INBOX") {
		t.Errorf("doveadm mailbox list = %q; want INBOX and Lists.dev", names)
	}
	got := doveadm("fetch", "-u", "ann", "hdr.subject", "mailbox", "Lists.dev", "all")
	if !strings.Contains(got, "folder test") {
		t.Errorf("doveadm fetch from Lists.dev = %q; want the copy", got)
	}
	if inbox := doveadm("search", "-u", "ann", "mailbox", "INBOX", "all"); strings.TrimSpace(inbox) != "" {
		t.Errorf("INBOX holds %q; want nothing", inbox)
	}
}
