package deliver

import (
	"context"
	"fmt"
	"io"
)

// RunFilter runs the command once with msg on its standard input and its
// standard output written to stdout, under Deliver's rules: {sender} (the
// only placeholder a once-per-message run can fill; the others are
// empty and refused) is checked and substituted into one argument, the
// program's path is checked, msg is written whole into a sealed file
// first, the program runs in its own process group, killed on timeout
// and after it exits. The result is classified as Deliver's; an exit
// status is in the wrapped *exec.ExitError. stdout must not block: the
// program would hang until its timeout.
func (d *MDA) RunFilter(ctx context.Context, sender string, msg io.Reader, stdout io.Writer) error {
	argv, err := d.args(sender, Recipient{})
	if err != nil {
		err = fmt.Errorf("filter argument rejected: %w", err)
		return &Error{Target: d.target, Permanent: true, Reason: SafeValue(err.Error(), 200), Err: err}
	}
	return d.run(ctx, argv, msg, stdout)
}
