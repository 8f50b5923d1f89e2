package deliver

import (
	"context"
	"fmt"
	"time"
)

// Check opens a session the way a delivery does (connect, TLS or
// STARTTLS as configured, EHLO or LHLO) and ends it with QUIT, without
// MAIL FROM: nothing is delivered or queued. For `popfetch check
// --connect`. The error says which step failed.
func (d *SMTP) Check(ctx context.Context) error {
	if d.cfgErr != nil {
		return fmt.Errorf("%s: configuration: %w", d.target, d.cfgErr)
	}
	c, _, stop, err := d.connect(ctx, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", d.target, err)
	}
	defer stop()
	defer c.Close()
	c.CommandTimeout = min(d.opts.Timeout, 5*time.Second)
	if err := c.Quit(); err != nil {
		return fmt.Errorf("%s: quit: %w", d.target, err)
	}
	return nil
}
