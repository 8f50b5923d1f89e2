package fetch

import (
	"context"
	"log/slog"
)

// lazyAttrs is a handler's WithAttrs deferred until a record is written:
// each message's logger carries its uid and msgnum, and the text and JSON
// handlers format such attributes when WithAttrs is called (four
// allocations per message), which is wasted on the messages that log
// nothing at the level in force. A record gets the attributes first, as
// WithAttrs would have placed them.
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

// lazyLog is l.With(a, b), formatted only if something is logged: the
// logger, its handler and the attributes in one value, so that a
// delivery's logger costs no allocation of its own (it is a part of
// deliveryState).
type lazyLog struct {
	l     slog.Logger
	h     lazyAttrs
	attrs [2]slog.Attr
}

// init makes z l.With(a, b) and returns it.
func (z *lazyLog) init(l *slog.Logger, a, b slog.Attr) *slog.Logger {
	z.attrs = [2]slog.Attr{a, b}
	z.h = lazyAttrs{h: l.Handler(), attrs: z.attrs[:]}
	z.l = *slog.New(&z.h)
	return &z.l
}

func (l *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	n := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	n.AddAttrs(l.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		n.AddAttrs(a)
		return true
	})
	return l.h.Handle(ctx, n)
}

func (l *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return l.h.WithAttrs(append(l.attrs[:len(l.attrs):len(l.attrs)], attrs...))
}

func (l *lazyAttrs) WithGroup(name string) slog.Handler {
	return l.h.WithAttrs(l.attrs).WithGroup(name)
}
