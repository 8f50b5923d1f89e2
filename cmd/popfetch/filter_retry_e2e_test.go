package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	milter "github.com/d--j/go-milter"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// modeMilter is a go-milter test server whose answer the test switches:
// "tempfail" (451), "slow" (an answer after 3 s), else accept with
// X-Filtered. It records the recipients of each conversation.
type modeMilter struct {
	mode  atomic.Value // string
	mu    sync.Mutex
	rcpts [][]string
}

type modeSession struct {
	milter.NoOpMilter
	m     *modeMilter
	rcpts []string
}

func (s *modeSession) RcptTo(to, _ string, _ milter.Modifier) (*milter.Response, error) {
	s.rcpts = append(s.rcpts, to)
	return milter.RespContinue, nil
}

func (s *modeSession) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	s.m.mu.Lock()
	s.m.rcpts = append(s.m.rcpts, s.rcpts)
	s.m.mu.Unlock()
	switch s.m.mode.Load().(string) {
	case "tempfail":
		return milter.RespTempFail, nil
	case "slow":
		time.Sleep(3 * time.Second)
	}
	if err := m.AddHeader("X-Filtered", "yes"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

// serve starts the milter on the unix socket path; stop closes it.
func (mm *modeMilter) serve(t *testing.T, path string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := milter.NewServer(milter.WithMilter(func() milter.Milter { return &modeSession{m: mm} }), milter.WithAction(milter.OptAddHeader))
	go srv.Serve(ln)
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close(); ln.Close() }) }
	t.Cleanup(stop)
	return stop
}

// TestFilterRetryEndToEnd: with the real binary and a real dovecot, a
// filter that is down, answers tempfail or does not answer within its
// timeout leaves the message on the server with nothing delivered; the
// next fetch, with the filter back, delivers it once and deletes it. A
// multidrop message is filtered with one RCPT TO per routed user.
func TestFilterRetryEndToEnd(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{})
	for _, mode := range []string{"down", "tempfail", "slow"} {
		t.Run(mode, func(t *testing.T) {
			sockDir, err := os.MkdirTemp("", "pfm")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(sockDir)
			sock := filepath.Join(sockDir, "m.sock")
			mm := &modeMilter{}
			mm.mode.Store(mode)
			if mode != "down" {
				mm.serve(t, sock)
			}
			mb := srv.AddUser(t, "retry"+mode, "pw")
			mb.Put(t, providerMsg("r-"+mode, "retry "+mode, "hello\r\n"))
			dir := t.TempDir()
			maildir := filepath.Join(dir, "Maildir")
			rc := filepath.Join(dir, "popfetch.hcl")
			writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
				name: "retry", port: srv.PlainPort, user: mb.User, pass: "pw", maildir: maildir,
				extra: []string{fmt.Sprintf("filter \"m\" {\n    milter = %q\n    timeout = \"1s\"\n  }", "unix:"+sock)},
			}))
			r := daemonCLI(t, rc, "-v", "fetch")
			if r.code == 0 || mb.Count(t) != 1 || len(maildirFiles(t, maildir)) != 0 {
				t.Fatalf("first fetch: exit %d, %d on the server, %d delivered\n%s%s", r.code, mb.Count(t), len(maildirFiles(t, maildir)), r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, "filter m: temporary failure: ") {
				t.Errorf("the log does not say why:\n%s", r.stderr)
			}
			t.Logf("first fetch:\n%s", r.stderr)
			if mode == "down" {
				mm.serve(t, sock)
			}
			mm.mode.Store("accept")
			r = daemonCLI(t, rc, "-v", "fetch")
			files := maildirFiles(t, maildir)
			if r.code != 0 || mb.Count(t) != 0 || len(files) != 1 {
				t.Fatalf("second fetch: exit %d, %d on the server, %d delivered\n%s%s", r.code, mb.Count(t), len(files), r.stdout, r.stderr)
			}
			b, _ := os.ReadFile(files[0])
			if !strings.Contains(string(b), "\nX-Filtered: yes\n") {
				t.Errorf("delivered unfiltered:\n%s", b)
			}
		})
	}

	t.Run("multidrop", func(t *testing.T) {
		sockDir, err := os.MkdirTemp("", "pfm")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(sockDir)
		sock := filepath.Join(sockDir, "m.sock")
		mm := &modeMilter{}
		mm.mode.Store("accept")
		mm.serve(t, sock)
		mb := srv.AddUser(t, "domain", "pw")
		msg := strings.Replace(string(providerMsg("md1", "to two", "hello\r\n")), "To: joe@provider.example", "To: alice@example.com, bob@example.com", 1)
		mb.Put(t, []byte(msg))
		dir := t.TempDir()
		rc := filepath.Join(dir, "popfetch.hcl")
		writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{
			name: "domain", port: srv.PlainPort, user: mb.User, pass: "pw", maildir: filepath.Join(dir, "{user}"),
			extra: []string{fmt.Sprintf("filter \"m\" { milter = %q }", "unix:"+sock),
				"multidrop {\n    local_domains = [\"example.com\"]\n    user \"alice\" {}\n    user \"bob\" {}\n  }"},
		}))
		r := daemonCLI(t, rc, "-v", "fetch")
		if r.code != 0 || mb.Count(t) != 0 {
			t.Fatalf("fetch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		mm.mu.Lock()
		got := mm.rcpts
		mm.mu.Unlock()
		if len(got) != 1 || !slices.Contains(got[0], "alice@example.com") || !slices.Contains(got[0], "bob@example.com") || len(got[0]) != 2 {
			t.Errorf("milter conversations' recipients = %q; want one with alice and bob", got)
		}
		for _, u := range []string{"alice", "bob"} {
			if n := len(maildirFiles(t, filepath.Join(dir, u))); n != 1 {
				t.Errorf("%s has %d copies", u, n)
			}
		}
	})
}
