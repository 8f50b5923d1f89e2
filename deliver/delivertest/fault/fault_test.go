package fault

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/delivertest"
)

func deliverTo(f *Target, uid string, users ...string) []error {
	var rcpts []deliver.Recipient
	for _, u := range users {
		rcpts = append(rcpts, deliver.Recipient{User: u})
	}
	m := &deliver.Message{UID: uid, Raw: []byte("Subject: x\r\n\r\nbody\r\n")}
	return f.Deliver(context.Background(), m, "", rcpts, []deliver.Field{{Name: "X-Popfetch-Reason", Value: "why " + uid}})
}

func TestTarget(t *testing.T) {
	f := New().Temporary("bob", "busy").Permanent("cy", "MDA exit 67")
	errs := deliverTo(f, "m1", "ann", "bob", "cy")
	if errs[0] != nil || errs[1] == nil || deliver.IsPermanent(errs[1]) || !deliver.IsPermanent(errs[2]) {
		t.Fatalf("Deliver = %v; want ann ok, bob temporary, cy permanent", errs)
	}
	f.Fail("bob", nil)
	deliverTo(f, "m2", "bob")
	f.Clear()
	deliverTo(f, "m3", "cy")
	if !slices.Equal(f.Copies("ann"), []string{"m1"}) || !slices.Equal(f.Copies("bob"), []string{"m2"}) || !slices.Equal(f.Copies("cy"), []string{"m3"}) || f.Users() != 3 || f.Calls() != 3 {
		t.Errorf("copies %v, users %d, calls %d", f.All(), f.Users(), f.Calls())
	}
	if r, ok := f.LookupReason("m2"); !ok || r != "why m2" || f.Reason("m9") != "" {
		t.Errorf("reasons: m2 %q %v, m9 %q", r, ok, f.Reason("m9"))
	}
}

func TestTargetFailOnce(t *testing.T) {
	f := New().FailOnce("ann", &deliver.Error{Target: "fake", Permanent: true, Reason: "x"}, 10*time.Millisecond)
	if errs := deliverTo(f, "m1", "ann", "bob"); errs[0] != nil {
		t.Fatalf("with two recipients: %v; want the fault kept for a lone delivery", errs)
	}
	start := time.Now()
	if errs := deliverTo(f, "m2", "ann"); errs[0] == nil || time.Since(start) < 10*time.Millisecond {
		t.Fatalf("first lone delivery = %v after %v; want the fault after the delay", errs, time.Since(start))
	}
	if errs := deliverTo(f, "m3", "ann"); errs[0] != nil {
		t.Fatalf("second lone delivery = %v; want it accepted", errs)
	}
}

func TestTargetNext(t *testing.T) {
	dir := t.TempDir()
	f := New().Temporary("bob", "busy")
	f.Next = deliver.NewMaildir(filepath.Join(dir, "{user}"), deliver.MaildirOptions{LocalHost: "h"})
	errs := deliverTo(f, "m1", "ann", "bob")
	if errs[0] != nil || errs[1] == nil {
		t.Fatalf("Deliver = %v", errs)
	}
	if n, m := delivertest.MaildirCount(t, filepath.Join(dir, "ann")), delivertest.MaildirCount(t, filepath.Join(dir, "bob")); n != 1 || m != 0 || len(f.Copies("ann")) != 1 {
		t.Errorf("Maildir copies ann %d bob %d, recorded %v", n, m, f.All())
	}
}
