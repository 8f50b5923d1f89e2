package deliver

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// plainTarget is a Target that is not a Reporter.
type plainTarget struct{ errs []error }

func (p plainTarget) Deliver(ctx context.Context, m *Message, sender string, rcpts []Recipient, extra []Field) []error {
	return p.errs
}

// A Target that cannot report early still has each of its results passed
// to the ResultFunc once, when Deliver returns.
func TestDeliverReportingPlainTarget(t *testing.T) {
	boom := errors.New("boom")
	var calls []string
	errs := DeliverReporting(context.Background(), plainTarget{errs: []error{nil, boom}}, smtpMsg("Subject: x\r\n\r\nb\r\n"), "",
		[]Recipient{{User: "ann"}, {User: "bob"}}, nil, func(i int, err error, _ Receipt) { calls = append(calls, fmt.Sprint(i, err)) })
	if len(errs) != 2 || errs[0] != nil || errs[1] != boom {
		t.Fatalf("DeliverReporting = %v", errs)
	}
	if got := fmt.Sprint(calls); got != "[0 <nil> 1 boom]" {
		t.Errorf("reported %s; want each result once, in order", got)
	}
	// A nil ResultFunc is allowed.
	DeliverReporting(context.Background(), plainTarget{errs: []error{nil}}, smtpMsg("Subject: x\r\n\r\nb\r\n"), "", []Recipient{{User: "ann"}}, nil, nil)
}
