package deliver

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// TestOpenWriteToSmallBoundary: copies on both sides of the small
// buffer's size (every byte a bare LF, CRs, CRLFs, a CR at the end),
// converted concurrently so that pooled buffers pass between copies of
// different messages, are each exactly the reference conversion: no byte
// of one message in another's copy.
func TestOpenWriteToSmallBoundary(t *testing.T) {
	var raws [][]byte
	for n := eolSmall/2 - 8; n <= eolSmall/2+8; n++ {
		raws = append(raws, bytes.Repeat([]byte{'\n'}, n))
	}
	for n := eolSmall - 12; n <= eolSmall+12; n++ {
		for _, unit := range []string{"a", "\r\n", "\r", "b\n"} {
			s := strings.Repeat(unit, n/len(unit)+1)[:n]
			raws = append(raws, []byte(s))
			raws = append(raws, []byte(s[:len(s)-1]+"\r"))
		}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, raw := range raws {
				raw := bytes.ReplaceAll(raw, []byte("a"), []byte{byte('A' + (i+w)%26)})
				for _, lf := range []bool{true, false} {
					want := eolReference(string(raw), lf)
					var b bytes.Buffer
					if _, err := Open(&Message{Raw: raw}, nil, lf).(io.WriterTo).WriteTo(&b); err != nil {
						t.Error(err)
						return
					}
					if b.String() != want {
						t.Errorf("%s: copy %d (%d bytes) lf=%v differs from the reference", fmt.Sprint(w), i, len(raw), lf)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
