package fetch

import (
	"strings"
	"testing"
)

// TestOpQueue checks the queue of sent commands against a plain slice
// used as a FIFO, through pushes and pops that empty it or not, and that
// its array stays within twice the most commands queued at once.
func TestOpQueue(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  string // p: push, o: pop
	}{
		{"empty each time", "pppooopoppoo"},
		{"never empty", "pp" + strings.Repeat("ppo", 200)},
		{"grow and drain", strings.Repeat("p", 50) + strings.Repeat("o", 50) + strings.Repeat("p", 10)},
		{"one at a time", strings.Repeat("po", 100)},
		{"saw", strings.Repeat("pppppoooo", 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q opQueue
			var ref []op
			most, n := 0, 0
			for i, c := range tc.ops {
				switch c {
				case 'p':
					n++
					o := op{verb: "RETR", e: entry{Num: n}}
					q.push(o)
					ref = append(ref, o)
					q.last().close = n%3 == 0
					ref[len(ref)-1].close = n%3 == 0
				case 'o':
					got, want := q.pop(), ref[0]
					ref = ref[1:]
					if got != want {
						t.Fatalf("step %d: pop = %+v; want %+v", i, got, want)
					}
				}
				if q.len() != len(ref) {
					t.Fatalf("step %d: len = %d; want %d", i, q.len(), len(ref))
				}
				most = max(most, len(ref))
				if c := cap(q.ops); c > 2*most+8 {
					t.Fatalf("step %d: array of %d for at most %d queued", i, c, most)
				}
			}
		})
	}
}
