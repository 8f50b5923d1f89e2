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
