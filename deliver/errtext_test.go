package deliver

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// TestErrorSaysStepOnce: an Error whose reason and underlying error name
// the same step says it once ("open maildir: not a directory: open
// maildir: open /m: not a directory" before), and keeps both when they
// say different things.
func TestErrorSaysStepOnce(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{tempError("maildir /m", "open maildir", &pathErr{"open", "/m", syscall.ENOTDIR}),
			"maildir /m: temporary failure: open maildir: open /m: not a directory"},
		{&Error{Target: "mda /bin/x", Reason: "MDA killed after 2m0s", Err: errors.New("signal: killed")},
			"mda /bin/x: temporary failure: MDA killed after 2m0s: signal: killed"},
		// Same step, and each says something the other does not (the
		// reason a limit, say): the step once, both kept.
		{&Error{Target: "smtp h", Reason: "no reply: x", Err: errors.New("no reply: y")},
			"smtp h: temporary failure: no reply: x: y"},
		{&Error{Target: "smtp h", Reason: "no reply: y", Err: errors.New("no reply: read: y")},
			"smtp h: temporary failure: no reply: read: y"},
	}
	for _, tt := range tests {
		got := tt.err.Error()
		if got != tt.want {
			t.Errorf("Error() = %q; want %q", got, tt.want)
		}
		first, _, _ := strings.Cut(strings.SplitN(got, "failure: ", 2)[1], ": ")
		if strings.Count(got, first+": ") > 1 {
			t.Errorf("%q says %q twice", got, first)
		}
	}
}

type pathErr struct {
	op, path string
	err      error
}

func (e *pathErr) Error() string { return e.op + " " + e.path + ": " + e.err.Error() }
func (e *pathErr) Unwrap() error { return e.err }
