package fetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/deliver/delivertest/fault"
	"github.com/popfetch/popfetch/deliver/learned"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

func TestLearnedPath(t *testing.T) {
	a := &rcfile.Account{StateDir: "/var/lib/popfetch", Username: "catchall@example.com", Server: "POP.Example.com", Port: 995}
	if got, want := LearnedPath(a), "/var/lib/popfetch/learned/catchall@example.com@pop.example.com.routes"; got != want {
		t.Errorf("LearnedPath = %q; want %q", got, want)
	}
	a.Port, a.Name = 110, "renamed"
	if got, want := LearnedPath(a), "/var/lib/popfetch/learned/catchall@example.com@pop.example.com.routes"; got != want {
		t.Errorf("LearnedPath (other port and name) = %q; want %q", got, want)
	}
	a.MailboxID = "../x/.y"
	if got, want := LearnedPath(a), "/var/lib/popfetch/learned/%2E.%2Fx%2F.y.routes"; got != want {
		t.Errorf("LearnedPath (mailbox_id) = %q; want %q", got, want)
	}
}

// TestMultidropLearnedRoutes: the routes in the account's learned file
// route at the next poll: a list by its List-Id, an old address outside
// the local domains; others still go to the postmaster.
func TestMultidropLearnedRoutes(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
		domainMsg("m1", "To: list@lists.example.org\nList-Id: List <l.example.org>\nMessage-ID: <1@x>"),
		domainMsg("m2", "To: Bob <bob@old.example.net>\nMessage-ID: <2@x>"),
		domainMsg("m3", "To: other@lists.example.org\nList-Id: <other.example.org>\nMessage-ID: <3@x>"),
	}})
	a := testAccount(t, srv)
	path := LearnedPath(a)
	for _, r := range []struct{ key, user string }{{"list-id:l.example.org", "carol"}, {"bob@old.example.net", "bob"}} {
		if _, err := learned.Add(path, r.key, r.user, "test"); err != nil {
			t.Fatal(err)
		}
	}
	users, pm := fault.New(), fault.New()
	res := multidropPoller(t, users, pm, false).Poll(context.Background(), a)
	if res.Err != nil || res.Delivered != 3 || len(srv.Messages()) != 0 {
		t.Fatalf("Poll = %+v", res)
	}
	for u, want := range map[string]string{"carol": "m1", "bob": "m2", "postmaster": "m3"} {
		tgt := users
		if u == "postmaster" {
			tgt = pm
		}
		if got := strings.Join(tgt.Copies(u), ","); got != want {
			t.Errorf("%s got %q; want %q", u, got, want)
		}
	}
}

// TestMultidropLearnedFileBad: a learned file that does not parse, or that
// another user can change, fails the poll with an error naming it (and
// the line); the mail stays on the server rather than going to the
// postmaster as unknown.
func TestMultidropLearnedFileBad(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode os.FileMode
		data string
		want string
		is   error
	}{
		{name: "invalid", mode: 0o600, data: "# x\nlist-id:l.example.org carol\nbroken\n", want: ".routes:3: want KEY USER"},
		{name: "untrusted", mode: 0o666, data: "list-id:l.example.org carol\n", is: trust.ErrUntrustedFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Messages: []pop3test.Message{
				domainMsg("m1", "To: list@lists.example.org\nList-Id: <l.example.org>\nMessage-ID: <1@x>"),
			}})
			a := testAccount(t, srv)
			path := LearnedPath(a)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			users, pm := fault.New(), fault.New()
			res := multidropPoller(t, users, pm, false).Poll(context.Background(), a)
			if res.Err == nil || !strings.Contains(res.Err.Error(), "learned routes") || !strings.Contains(res.Err.Error(), path) {
				t.Fatalf("Poll err = %v; want a learned routes error naming %s", res.Err, path)
			}
			if tc.want != "" && !strings.Contains(res.Err.Error(), tc.want) {
				t.Errorf("Poll err = %v; want it to contain %q", res.Err, tc.want)
			}
			if tc.is != nil && !errors.Is(res.Err, tc.is) {
				t.Errorf("Poll err = %v; want %v", res.Err, tc.is)
			}
			if len(srv.Messages()) != 1 || len(pm.Copies("postmaster")) != 0 || res.Delivered != 0 {
				t.Errorf("message not kept on the server: %+v, postmaster %v", res, pm.Copies("postmaster"))
			}
		})
	}
}
