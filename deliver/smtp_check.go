package deliver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// checkTimeout bounds a check's whole session: a check is interactive,
// and the delivery timeout (5 minutes by default, RFC 5321 §4.5.3.2) is
// made for a server that is slow under load, not for an admin waiting.
const checkTimeout = 15 * time.Second

// Check opens a session the way a delivery does (connect, TLS or
// STARTTLS as configured, EHLO or LHLO) and ends it with QUIT, without
// MAIL FROM: nothing is delivered or queued. For `popfetch check
// --connect`. The error says which step failed. The whole session takes
// at most the delivery timeout or checkTimeout, the shorter.
func (d *SMTP) Check(ctx context.Context) error {
	if d.cfgErr != nil {
		return fmt.Errorf("%s: configuration: %w", d.target, d.cfgErr)
	}
	limit := min(d.opts.Timeout, checkTimeout)
	cd := *d
	cd.opts.Timeout, cd.opts.FinalTimeout = limit, limit
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	timedOut := func(err error) error {
		var ne net.Error
		if ctx.Err() == nil && (cctx.Err() != nil || errors.As(err, &ne) && ne.Timeout()) {
			return fmt.Errorf("%w (no answer within %v)", err, limit)
		}
		return err
	}
	c, _, stop, err := cd.connect(cctx, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", d.target, timedOut(err))
	}
	defer stop()
	defer c.Close()
	c.CommandTimeout = min(limit, 5*time.Second)
	if err := c.Quit(); err != nil {
		return fmt.Errorf("%s: quit: %w", d.target, timedOut(err))
	}
	return nil
}
