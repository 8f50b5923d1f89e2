package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a fake service manager's notification socket in dir
// (for NOTIFY_SOCKET): its path, and the messages sent to it, closed
// once the test ends.
func notifySocket(t *testing.T, dir string) (string, <-chan string) {
	t.Helper()
	sock := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return sock, msgs
}

// TestDaemonSystemdNotify: `popfetch run` under a fake service manager
// (NOTIFY_SOCKET, WATCHDOG_USEC) says READY=1 once it serves,
// RELOADING=1 with MONOTONIC_USEC then READY=1 around a SIGHUP, feeds
// the watchdog at half its interval, and says STOPPING=1 on SIGTERM.
func TestDaemonSystemdNotify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock, msgs := notifySocket(t, dir)
	// next returns the next message other than WATCHDOG=1 and how many
	// watchdog pings came before it.
	next := func(what string) (string, int) {
		t.Helper()
		pings := 0
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m := <-msgs:
				if m == "WATCHDOG=1" {
					pings++
					continue
				}
				return m, pings
			case <-timeout:
				t.Fatalf("no %s from popfetch run within 10 s", what)
			}
		}
	}

	// Nothing listens on the account's port: the polls fail, the
	// scheduler runs on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "alice", port: port, user: "alice", pass: "pw", maildir: filepath.Join(dir, "Maildir")}))
	d := startDaemonArgs(t, rc, []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000", "WATCHDOG_PID="}, "-f", rc, "run")

	if m, _ := next("READY=1"); m != "READY=1" {
		t.Fatalf("first message %q; want READY=1", m)
	}
	// Pings every 200 ms: at least 3 in a second.
	time.Sleep(time.Second)
	d.signal(t, syscall.SIGHUP)
	m, pings := next("RELOADING=1")
	if !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("after SIGHUP got %q; want RELOADING=1 with MONOTONIC_USEC", m)
	}
	if pings < 3 {
		t.Errorf("%d WATCHDOG=1 pings in the second before SIGHUP; want every 200 ms", pings)
	}
	if m, _ := next("READY=1 after the reload"); m != "READY=1" {
		t.Errorf("after RELOADING=1 got %q; want READY=1", m)
	}
	d.signal(t, syscall.SIGTERM)
	if m, _ := next("STOPPING=1"); m != "STOPPING=1" {
		t.Errorf("after SIGTERM got %q; want STOPPING=1", m)
	}
	d.waitExit(t, 20*time.Second, "SIGTERM")
}

// TestDaemonNoReadyAfterStopping: a SIGHUP that arrives while the daemon
// stops (a poll in flight keeps it from exiting at once) reloads nothing
// systemd hears of: after STOPPING=1 no RELOADING=1 and no READY=1.
func TestDaemonNoReadyAfterStopping(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock, msgs := notifySocket(t, dir)
	// A server that accepts and never greets: the poll waits for the
	// greeting until the account's timeout, and the stop waits for it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil,
		rcAccount{name: "alice", port: l.Addr().(*net.TCPAddr).Port, user: "alice", pass: "pw",
			maildir: filepath.Join(dir, "Maildir"), extra: []string{`timeout = "4s"`}}))
	d := startDaemonArgs(t, rc, []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=", "WATCHDOG_PID="}, "-f", rc, "run")
	select {
	case m := <-msgs:
		if m != "READY=1" {
			t.Fatalf("first message %q; want READY=1", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no READY=1")
	}
	select {
	case conn := <-accepted:
		defer conn.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not poll")
	}
	d.signal(t, syscall.SIGTERM)
	select {
	case m := <-msgs:
		if m != "STOPPING=1" {
			t.Fatalf("after SIGTERM got %q; want STOPPING=1", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no STOPPING=1")
	}
	if d.exited() {
		t.Fatal("the daemon exited before the SIGHUP; the poll in flight should have held it")
	}
	d.signal(t, syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload", func() bool { return len(d.log.lines("rc file reloaded")) > 0 || d.exited() })
	d.waitExit(t, 20*time.Second, "SIGTERM")
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			if m != "WATCHDOG=1" {
				t.Errorf("after STOPPING=1 got %q; want nothing", m)
			}
		case <-time.After(time.Second):
			return
		}
	}
}
