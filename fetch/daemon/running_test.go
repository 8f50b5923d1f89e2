package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/rcfile"
)

// TestRunning: Running (what /healthz reports) is true only between Run
// starting and a stop beginning; a stop still waiting for a poll in
// flight is not running.
func TestRunning(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	poll := func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
		close(started)
		<-release
		return fetch.Result{Account: a.Name}
	}
	d := New(config(acct("a", "pop.example", time.Hour)), poll, Options{Jitter: func(time.Duration) time.Duration { return 0 }})
	if d.Running() {
		t.Error("Running before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-started
	if !d.Running() {
		t.Error("not Running while polling")
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for d.Running() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d.Running() {
		t.Error("Running while stopping")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d.Running() {
		t.Error("Running after Run returned")
	}
}

// TestAlive: Alive (what feeds the systemd watchdog) is true only while
// Run's loop answers: not before Run, not while the loop is stuck on the
// daemon's lock, not while a stop waits for a poll in flight.
func TestAlive(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	poll := func(ctx context.Context, a *rcfile.Account, opts fetch.PollOptions) fetch.Result {
		close(started)
		<-release
		return fetch.Result{Account: a.Name}
	}
	d := New(config(acct("a", "pop.example", time.Hour)), poll, Options{Jitter: func(time.Duration) time.Duration { return 0 }})
	alive := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return d.Alive(ctx)
	}
	if alive() {
		t.Error("Alive before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-started
	if !alive() {
		t.Error("not Alive while polling")
	}
	// A wedged loop: the lock held, and the loop woken so that it
	// blocks on the lock.
	d.mu.Lock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
	time.Sleep(50 * time.Millisecond)
	if alive() {
		t.Error("Alive while the scheduler is stuck on its lock")
	}
	d.mu.Unlock()
	if !alive() {
		t.Error("not Alive after the lock was released")
	}
	cancel()
	time.Sleep(50 * time.Millisecond)
	if alive() {
		t.Error("Alive while stopping")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
