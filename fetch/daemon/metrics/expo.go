package metrics

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
)

// family is one metric family of the exposition: its name, its type
// (counter, gauge, histogram, summary) and its help text.
type family struct {
	name, typ, help string
}

// expo writes the Prometheus text exposition format, version 0.0.4: per
// family a "# HELP" and a "# TYPE" line, then its samples, one a line,
// "name{label="value",...} value". The samples of a family must be added
// together; its header is written before the first, so a family without
// samples is left out.
type expo struct {
	w   *bufio.Writer
	cur *family
}

func newExpo(w io.Writer) *expo { return &expo{w: bufio.NewWriter(w)} }

// add writes one sample of f; suffix is "" or the part a histogram or
// summary appends to the family name ("_bucket", "_sum", "_count").
// labels are name, value pairs; the names are this package's constants,
// the values are escaped.
func (e *expo) add(f *family, suffix string, v float64, labels ...string) {
	if e.cur != f {
		e.cur = f
		e.w.WriteString("# HELP ")
		e.w.WriteString(f.name)
		e.w.WriteByte(' ')
		e.w.WriteString(helpEscaper.Replace(f.help))
		e.w.WriteString("\n# TYPE ")
		e.w.WriteString(f.name)
		e.w.WriteByte(' ')
		e.w.WriteString(f.typ)
		e.w.WriteByte('\n')
	}
	e.w.WriteString(f.name)
	e.w.WriteString(suffix)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			e.w.WriteByte('{')
		} else {
			e.w.WriteByte(',')
		}
		e.w.WriteString(labels[i])
		e.w.WriteString(`="`)
		e.w.WriteString(labelEscaper.Replace(labels[i+1]))
		e.w.WriteByte('"')
	}
	if len(labels) >= 2 {
		e.w.WriteByte('}')
	}
	e.w.WriteByte(' ')
	e.w.WriteString(formatFloat(v))
	e.w.WriteByte('\n')
}

func (e *expo) flush() error { return e.w.Flush() }

// The text format escapes backslash and newline in help texts, and also
// the double quote in label values.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// formatFloat writes a sample value as Go's ParseFloat and Prometheus
// read it: the shortest representation that round-trips, and +Inf, -Inf
// and NaN by those names.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
