package deliver

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestErrorDedup: Error drops its Reason when the error starts with
// the same step. It must never drop what only the Reason says (the
// timeout's length), nor print the system's error twice.
func TestErrorDedup(t *testing.T) {
	timeout := &os.PathError{Op: "read", Path: "tcp", Err: os.ErrDeadlineExceeded}
	perm := &os.PathError{Op: "open", Path: "/tmp/x", Err: errors.New("permission denied")}
	for _, tt := range []struct {
		name     string
		e        *Error
		want     []string
		notTwice string
	}{
		{"connect timeout keeps its limit",
			&Error{Target: "smtp x", Reason: "connect: timed out after 5m0s", Err: fmt.Errorf("connect: %w", timeout)},
			[]string{"5m0s", "i/o timeout"}, ""},
		{"MDA input file said once",
			&Error{Target: "mda x", Reason: "MDA input file: " + SafeValue(perm.Error(), 150), Err: perm},
			[]string{"MDA input file", "permission denied"}, "permission denied"},
		{"step dedup",
			&Error{Target: "maildir m", Reason: "open maildir: not a directory", Err: errors.New("open maildir: open /m: not a directory")},
			[]string{"open /m: not a directory"}, "open maildir"},
	} {
		s := tt.e.Error()
		for _, w := range tt.want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: %q lacks %q", tt.name, s, w)
			}
		}
		if tt.notTwice != "" && strings.Count(s, tt.notTwice) > 1 {
			t.Errorf("%s: %q says %q twice", tt.name, s, tt.notTwice)
		}
	}
}
