package sdnotify

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen makes a fake service manager socket at name and returns a
// function that reads the next datagram (or "" after a timeout).
func listen(t *testing.T, name string) func(time.Duration) string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func(d time.Duration) string {
		c.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
}

func TestNotify(t *testing.T) {
	sockets := []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
	}
	if runtime.GOOS == "linux" {
		sockets = append(sockets, struct{ name, addr string }{"abstract", "@popfetch-sdnotify-test-" + time.Now().Format("150405.000000000")})
	}
	for _, s := range sockets {
		t.Run(s.name, func(t *testing.T) {
			next := listen(t, s.addr)
			t.Setenv("NOTIFY_SOCKET", s.addr)
			t.Setenv("WATCHDOG_USEC", "")
			n, err := New()
			if err != nil || !n.On || n.Watchdog != 0 {
				t.Fatalf("New = %+v, %v; want On, no watchdog", n, err)
			}
			if err := n.Ready(); err != nil {
				t.Fatal(err)
			}
			if got := next(time.Second); got != "READY=1" {
				t.Errorf("Ready sent %q", got)
			}
			if err := n.Reloading(); err != nil {
				t.Fatal(err)
			}
			if got := next(time.Second); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") || len(got) <= len("RELOADING=1\nMONOTONIC_USEC=") {
				t.Errorf("Reloading sent %q; want RELOADING=1 and MONOTONIC_USEC", got)
			}
			if err := n.Stopping(); err != nil {
				t.Fatal(err)
			}
			if got := next(time.Second); got != "STOPPING=1" {
				t.Errorf("Stopping sent %q", got)
			}
		})
	}
}

// TestUnset: without NOTIFY_SOCKET nothing is sent and nothing fails,
// even with a watchdog interval in the environment.
func TestUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "100000")
	n, err := New()
	if err != nil || n.On || n.Watchdog != 0 {
		t.Fatalf("New = %+v, %v; want off", n, err)
	}
	for _, f := range []func() error{n.Ready, n.Reloading, n.Stopping} {
		if err := f(); err != nil {
			t.Error(err)
		}
	}
	done := make(chan struct{})
	go func() { n.Watch(context.Background(), func(context.Context) bool { return true }); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Error("Watch without a socket did not return")
	}
}

// TestWatch: WATCHDOG=1 at half WATCHDOG_USEC while alive says yes, none
// while it says no, and Watch ends with ctx.
func TestWatch(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	next := listen(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)
	t.Setenv("WATCHDOG_USEC", "200000") // 200 ms: pings every 100 ms
	t.Setenv("WATCHDOG_PID", "")
	n, err := New()
	if err != nil || n.Watchdog != 200*time.Millisecond {
		t.Fatalf("New = %+v, %v; want a 200ms watchdog", n, err)
	}
	var alive atomic.Bool
	alive.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		n.Watch(ctx, func(context.Context) bool { return alive.Load() })
		close(done)
	}()
	for i := range 3 {
		if got := next(time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q", i, got)
		}
	}
	alive.Store(false)
	next(150 * time.Millisecond) // a ping already on its way
	if got := next(400 * time.Millisecond); got != "" {
		t.Errorf("got %q while not alive; want no ping", got)
	}
	alive.Store(true)
	if got := next(time.Second); got != "WATCHDOG=1" {
		t.Errorf("after recovery got %q", got)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Error("Watch did not end with its context")
	}
}

// TestNothingAfterStopping: once STOPPING=1 is sent, Reloading and Ready
// send nothing (a SIGHUP during the stop, or a reload that began before
// it and ends after, must not tell systemd the service is up again); the
// watchdog may still be fed.
func TestNothingAfterStopping(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after []func(*Notifier) error
	}{
		{"reload", []func(*Notifier) error{(*Notifier).Reloading, (*Notifier).Ready}},
		{"ready", []func(*Notifier) error{(*Notifier).Ready}},
		{"stopping twice", []func(*Notifier) error{(*Notifier).Stopping, (*Notifier).Ready}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := filepath.Join(t.TempDir(), "notify")
			next := listen(t, addr)
			t.Setenv("NOTIFY_SOCKET", addr)
			t.Setenv("WATCHDOG_USEC", "")
			n, err := New()
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Stopping(); err != nil {
				t.Fatal(err)
			}
			if got := next(time.Second); got != "STOPPING=1" {
				t.Fatalf("Stopping sent %q", got)
			}
			for _, f := range tc.after {
				if err := f(n); err != nil {
					t.Error(err)
				}
			}
			if got := next(200 * time.Millisecond); got != "" {
				t.Errorf("after STOPPING=1 sent %q; want nothing", got)
			}
		})
	}
}
