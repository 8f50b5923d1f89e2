package daemon

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/popfetch/popfetch/fetch"
)

// TestDaemonPollNotStarted: a poll stopped before it connected
// (fetch.Result.NotStarted) did not poll the account, so the status keeps
// the last poll's result, the totals, the failure count and the next poll
// as they were, and the fetch_all pass stays due; the PollNow caller gets
// the result as it is.
func TestDaemonPollNotStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := acct("a", "pop.example", time.Hour)
		a.FetchAll, a.Keep = true, true
		h := newHarness(t, config(a), nil)
		h.start()
		h.nextFor("a").ret(fetch.Result{Account: "a", Err: errors.New("dial tcp: connection refused")})
		before := h.waitIdleOrBackoff("a")
		if before.Failures != 1 || before.Last == nil {
			t.Fatalf("after a failure: status = %+v", before)
		}

		got := make(chan []fetch.Result, 1)
		go func() { r, _ := h.d.PollNow(context.Background(), []string{"a"}); got <- r }()
		c := h.nextFor("a")
		if !c.acct.FetchAll {
			t.Fatal("the first poll's failure used up the fetch_all pass")
		}
		c.ret(fetch.Result{Account: "a", NotStarted: true})
		if r := <-got; len(r) != 1 || !r[0].NotStarted {
			t.Errorf("PollNow = %+v; want the not-started result", r)
		}
		after := h.waitIdleOrBackoff("a")
		if after.State != before.State || after.Failures != before.Failures || after.Totals != before.Totals ||
			!after.NextPoll.Equal(before.NextPoll) || after.Last == nil || *after.Last != *before.Last {
			t.Errorf("after a poll stopped before it connected: status = %+v\nwant it unchanged: %+v", after, before)
		}

		go func() { _, _ = h.d.PollNow(context.Background(), []string{"a"}); got <- nil }()
		c = h.nextFor("a")
		if !c.acct.FetchAll {
			t.Error("a poll stopped before it connected used up the fetch_all pass")
		}
		c.ret(fetch.Result{Account: "a"})
		<-got
		if st := h.waitIdleOrBackoff("a"); st.Failures != 0 || st.Totals.Polls != before.Totals.Polls+1 {
			t.Errorf("after a poll that got through: status = %+v", st)
		}
	})
}
