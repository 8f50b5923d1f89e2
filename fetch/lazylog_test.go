package fetch

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"testing"
)

// TestLazyAttrs: a logger from lazyLog writes exactly what l.With would
// (text and JSON, with a group open before and after, attributes added
// later), and allocates nothing until it writes.
func TestLazyAttrs(t *testing.T) {
	attrs := []any{slog.String("uid", "u 1"), slog.Int("msgnum", 7)}
	for _, tc := range []struct {
		name string
		json bool
		use  func(l *slog.Logger)
	}{
		{"plain", false, func(l *slog.Logger) { l.Warn("oops", "size", 5) }},
		{"json", true, func(l *slog.Logger) { l.Error("bad", "err", "x", slog.Group("g", "a", 1)) }},
		{"group after", false, func(l *slog.Logger) { l.WithGroup("copy").Warn("m", "k", "v") }},
		{"with after", true, func(l *slog.Logger) { l.With("user", "joe").Warn("m", "k", "v") }},
		{"with after twice", false, func(l *slog.Logger) {
			a := l.With("user", "joe")
			l.With("user", "ann").Warn("m")
			a.Warn("m")
		}},
		{"below level", false, func(l *slog.Logger) { l.Info("not written") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func(pre bool) (*slog.Logger, *bytes.Buffer) {
				var b bytes.Buffer
				o := &slog.HandlerOptions{Level: slog.LevelWarn}
				var h slog.Handler = slog.NewTextHandler(&b, o)
				if tc.json {
					h = slog.NewJSONHandler(&b, o)
				}
				l := slog.New(h).With("account", "a")
				if pre {
					l = l.WithGroup("poll")
				}
				return l, &b
			}
			for _, pre := range []bool{false, true} {
				base, want := mk(pre)
				tc.use(base.With(attrs...))
				lazyBase, got := mk(pre)
				var z lazyLog
				tc.use(z.init(lazyBase, attrs[0].(slog.Attr), attrs[1].(slog.Attr)))
				strip := regexp.MustCompile(`"?time"?[=:]"?[^ ,"]*"?[ ,]`)
				if g, w := strip.ReplaceAllString(got.String(), ""), strip.ReplaceAllString(want.String(), ""); g != w {
					t.Errorf("group before %v:\n got %q\nwant %q", pre, g, w)
				}
			}
		})
	}
	l := slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	uid := slog.String("uid", "u1")
	z := new(lazyLog) // a part of deliveryState
	if n := testing.AllocsPerRun(100, func() {
		z.init(l, uid, slog.Int("msgnum", 1)).Log(context.Background(), slog.LevelInfo, "x")
	}); n > 0 {
		t.Errorf("lazyLog.init and a record below the level: %.0f allocations, want none", n)
	}
}
