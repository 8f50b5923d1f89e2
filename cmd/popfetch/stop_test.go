package main

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// The first SIGINT of a one-shot `popfetch fetch` ends the run at the
// next account: the account in flight finishes its session, the ones
// after it are not polled (no connection at all) and stderr names them.
func TestFetchStopSkipsRemainingAccounts(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	// The first account's server holds its answer to STAT until the
	// signal was handled, so the stop comes while that account is polled.
	one := pop3test.NewServer(t, pop3test.Options{User: "one", Faults: []pop3test.Fault{{Cmd: "STAT", N: 1, Session: 1, Action: pop3test.Custom,
		Func: func(c *pop3test.Conn) {
			close(entered)
			<-release
			_ = c.WriteLine("+OK 0 0")
		}}}})
	two := pop3test.NewServer(t, pop3test.Options{User: "two"})
	three := pop3test.NewServer(t, pop3test.Options{User: "three"})
	dir := t.TempDir()
	rc := filepath.Join(dir, "rc.hcl")
	var accts []rcAccount
	for i, srv := range []*pop3test.Server{one, two, three} {
		name := []string{"one", "two", "three"}[i]
		accts = append(accts, rcAccount{name: name, port: srv.Port(), user: name, pass: "pass",
			maildir: filepath.Join(dir, name, "Maildir"), extra: []string{`interval = "5m"`}})
	}
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, accts...))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, popfetchBin, "-f", rc, "fetch")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatalf("the first account's session did not reach STAT\nstderr:\n%s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the graceful stop", func() bool { return strings.Contains(stderr.String(), "stopping after the message in flight") })
	unblock()
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	out, errs := stdout.String(), stderr.String()
	if !strings.Contains(out, "one: 0 new") || strings.Contains(out, "two:") || strings.Contains(out, "three:") {
		t.Errorf("stdout:\n%s\nwant the summary of account one only", out)
	}
	if !strings.Contains(errs, "not polled: two, three") {
		t.Errorf("stderr:\n%s\nwant it to name the accounts not polled", errs)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitOK {
		t.Errorf("exit status %d; want %d (a graceful stop with no failure)", code, exitOK)
	}
	if n, m := two.Sessions(), three.Sessions(); n != 0 || m != 0 {
		t.Errorf("the accounts after the stop had %d and %d connections; want none:\n%s%s", n, m, two.Transcript(), three.Transcript())
	}
}
