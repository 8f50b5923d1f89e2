package filter

import (
	"bytes"
	"io"
)

// Limits of the header reader. The header a filter sees and the one Apply
// changes are split the same way (splitHeader), so a milter's header
// index always names the field it saw.
const (
	// MaxHeaderBytes bounds the header section read into memory. A field
	// that crosses it, and everything after, is treated as body (passed
	// on unchanged), like a line that is not a field.
	MaxHeaderBytes = 1 << 20
	// MaxFields bounds the number of header fields, the same way.
	MaxFields = 10000
)

// rawField is one header field as it is in the message: Raw holds the
// whole field (name, colon, value, folds) with its line ends.
type rawField struct {
	Name string // as written, without the colon
	Raw  []byte
}

// value returns the field's value as written after the colon, without
// the final line end, folds kept.
func (f rawField) value() []byte {
	v := f.Raw[len(f.Name)+1:]
	v = bytes.TrimSuffix(v, []byte("\n"))
	return bytes.TrimSuffix(v, []byte("\r"))
}

// unfolded returns the value unfolded (RFC 5322 §2.2.3: the line breaks
// of folds removed) and trimmed of surrounding white space.
func (f rawField) unfolded() string {
	v := f.value()
	out := make([]byte, 0, len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return string(bytes.TrimSpace(out))
}

// splitHeader returns the header fields at the start of b and the offset
// where they end: at the empty line that ends the header, at a line that
// is neither a field nor a continuation (what follows is body, as in
// Postfix's cleanup(8)), at the start of a field that is not complete
// within b (b is at most MaxHeaderBytes of the message) or at the start
// of field MaxFields+1. It is linear in len(b) and allocates only the
// field list; Raw slices b.
func splitHeader(b []byte) (fields []rawField, end int) {
	i := 0
	for i < len(b) && len(fields) < MaxFields {
		line := b[i:]
		if !isFieldStart(line) {
			return fields, i
		}
		// The field: this line and its continuations, each complete.
		j := i
		for {
			n := bytes.IndexByte(b[j:], '\n')
			if n < 0 {
				return fields, i // cut by the bound (or no line end at all)
			}
			j += n + 1
			if j >= len(b) || (b[j] != ' ' && b[j] != '\t') {
				break
			}
		}
		if j >= len(b) && len(b) >= MaxHeaderBytes {
			return fields, i // the next byte, beyond b, may continue it
		}
		colon := bytes.IndexByte(b[i:j], ':')
		fields = append(fields, rawField{Name: string(b[i : i+colon]), Raw: b[i:j:j]})
		i = j
	}
	return fields, i
}

// isFieldStart reports whether line starts a header field: a non-empty
// name of printable ASCII other than ':' (RFC 5322 §2.2 ftext), then ':'.
func isFieldStart(line []byte) bool {
	for i, c := range line {
		if c == ':' {
			return i > 0
		}
		if c < 33 || c > 126 {
			return false
		}
	}
	return false
}

// readHead reads the first MaxHeaderBytes of r (less if r is shorter).
func readHead(r io.ReaderAt, size int64) ([]byte, error) {
	n := min(size, MaxHeaderBytes)
	b := make([]byte, n)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}
