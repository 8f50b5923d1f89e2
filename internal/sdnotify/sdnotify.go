// Package sdnotify tells systemd how `popfetch run` is doing: the
// sd_notify(3) protocol of a Type=notify service (READY=1 once it serves,
// RELOADING=1 while it reloads its configuration, STOPPING=1 when it
// stops, WATCHDOG=1 while it is alive). It uses the maintained
// github.com/coreos/go-systemd/v22/daemon, which sends one datagram to
// the unix socket named by $NOTIFY_SOCKET (a name starting with '@' is
// in the Linux abstract namespace).
//
// Outside systemd, with NOTIFY_SOCKET unset, every call does nothing: a
// Notifier from New with no socket is a no-op, never an error.
package sdnotify

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends state changes to the service manager.
type Notifier struct {
	// On reports whether NOTIFY_SOCKET was set when the Notifier was made.
	On bool
	// Watchdog is the interval the service manager expects WATCHDOG=1
	// within (WATCHDOG_USEC), 0 when the watchdog is off.
	Watchdog time.Duration

	// mu orders the state messages; stopping is set once STOPPING=1 is
	// sent. After it systemd must hear no RELOADING=1 or READY=1: a
	// SIGHUP during the stop, or a reload that began before it, would
	// otherwise tell it the stopping service is up again.
	mu       sync.Mutex
	stopping bool
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (a watchdog
// meant for another process is off for this one). It leaves them in the
// environment; the units set NotifyAccess=main, so systemd ignores a
// message from any child that inherits them.
func New() (*Notifier, error) {
	n := &Notifier{On: os.Getenv("NOTIFY_SOCKET") != ""}
	if !n.On {
		return n, nil
	}
	w, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return n, fmt.Errorf("sd_notify watchdog: %w", err)
	}
	n.Watchdog = w
	return n, nil
}

func (n *Notifier) send(state string) error {
	if n == nil || !n.On {
		return nil
	}
	if _, err := sd.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// state sends a state change, unless the service is stopping; stop
// marks it stopping (and is sent once).
func (n *Notifier) state(state string, stop bool) error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return nil
	}
	n.stopping = stop
	return n.send(state)
}

// Ready says the service is up: its configuration loaded, its control
// socket listening, its scheduler running. After Stopping it sends
// nothing.
func (n *Notifier) Ready() error { return n.state(sd.SdNotifyReady, false) }

// Reloading says a configuration reload has begun; Ready must follow
// when it has ended, whether the new configuration was applied or not.
// systemd requires MONOTONIC_USEC with it (Type=notify-reload). After
// Stopping it sends nothing.
func (n *Notifier) Reloading() error {
	return n.state(sd.SdNotifyReloading+"\n"+sd.SdNotifyMonotonicUsec(), false)
}

// Stopping says the service is shutting down; from then on Ready and
// Reloading send nothing, and Stopping is not repeated.
func (n *Notifier) Stopping() error { return n.state(sd.SdNotifyStopping, true) }

// Watch sends WATCHDOG=1 every half Watchdog interval for as long as
// alive answers true within that half interval, until ctx ends. A false
// answer skips the ping, so a wedged service stops feeding the watchdog
// and systemd restarts it. Without a watchdog Watch returns at once.
func (n *Notifier) Watch(ctx context.Context, alive func(context.Context) bool) {
	if n == nil || !n.On || n.Watchdog <= 0 {
		return
	}
	every := n.Watchdog / 2
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, every)
		ok := alive(actx)
		cancel()
		if ok {
			n.send(sd.SdNotifyWatchdog) // nothing to do about a lost datagram but send the next
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
