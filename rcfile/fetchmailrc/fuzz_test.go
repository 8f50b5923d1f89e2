package fetchmailrc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
)

// FuzzConvert: any input parses or fails with an error, never panics,
// and takes time and memory bounded by its size.
func FuzzConvert(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.rc")
	for _, p := range append(files, exampleRC) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`poll a user "b\`))
	f.Add([]byte("poll a envelope 3 Received user x to a=b * here"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 1<<16 {
			return
		}
		res, err := Convert(src, Options{User: "me"})
		if err == nil && len(res.HCL) > 200*len(src)+4096 {
			t.Errorf("output of %d bytes for %d bytes of input", len(res.HCL), len(src))
		}
	})
}

// TestLargeInput: a large file converts in bounded time, and one with
// too many tokens is refused.
func TestLargeInput(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 2000; i++ {
		b.WriteString("poll h proto pop3 user u pass p keep\n")
	}
	start := time.Now()
	if _, err := Convert([]byte(b.String()), Options{User: "me"}); err != nil {
		t.Fatal(err)
	}
	// The bound catches quadratic blow-ups, not a slow machine: under
	// the race detector on a loaded 2-core CI machine it took 22 s.
	if d, limit := time.Since(start), testutil.Slow(20*time.Second); d > limit {
		t.Errorf("2000 entries took %v; want at most %v", d, limit)
	}
	if _, err := Parse([]byte(strings.Repeat("x ", maxTokens+1))); err == nil || !strings.Contains(err.Error(), "tokens") {
		t.Errorf("Parse of %d tokens = %v", maxTokens+1, err)
	}
}
