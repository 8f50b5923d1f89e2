package rcfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// FormatDiagnostic renders one diagnostic on one line,
//
//	file:line:col: error: Summary; Detail
//
// for logs and for WriteDiagnostics.
func FormatDiagnostic(d *hcl.Diagnostic) string {
	sev := "error"
	if d.Severity == hcl.DiagWarning {
		sev = "warning"
	}
	pos := "?:0:0" // never produced by this package; guards foreign diagnostics
	if d.Subject != nil {
		pos = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
	}
	s := fmt.Sprintf("%s: %s: %s", pos, sev, d.Summary)
	if d.Detail != "" {
		s += "; " + d.Detail
	}
	return oneLine.Replace(s) // one line, whatever HCL put in Detail
}

var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// WriteDiagnostics writes each diagnostic as a FormatDiagnostic line. If
// files holds the diagnostic's file (see SourceFiles), the offending source
// line follows, tab-indented, with carets under the subject: what a person
// at a terminal wants. Pass nil files for logs and golden tests. Secrets
// in the source line (the value of password and of any attribute with an
// unknown name) are shown as *** (see maskSource), also when the
// diagnostic is about something else on that line.
//
// This is used instead of hcl.NewDiagnosticTextWriter because every line
// must start with file:line:col so that editors and grep can jump to it,
// and because that writer would print secrets.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, files map[string]*hcl.File) error {
	bw := bufio.NewWriter(w)
	masked := map[string]*maskedSource{}
	for _, d := range diags {
		fmt.Fprintln(bw, FormatDiagnostic(d))
		if d.Subject == nil || files[d.Subject.Filename] == nil {
			continue
		}
		m := masked[d.Subject.Filename]
		if m == nil {
			m = maskSource(files[d.Subject.Filename].Bytes)
			masked[d.Subject.Filename] = m
		}
		line, col, width, ok := m.snippet(d.Subject)
		if !ok {
			continue
		}
		// Keep tabs in the pad so the carets line up under tabbed source.
		pad := []rune(line)
		col = min(col, len(pad))
		for i, r := range pad[:col] {
			if r != '\t' {
				pad[i] = ' '
			}
		}
		fmt.Fprintf(bw, "\t%s\n\t%s%s\n", line, string(pad[:col]), strings.Repeat("^", width))
	}
	return bw.Flush()
}

// SourceFiles reads the files that diags refer to, for WriteDiagnostics'
// snippets. Unreadable files are left out (the lines still print).
func SourceFiles(diags hcl.Diagnostics) map[string]*hcl.File {
	files := map[string]*hcl.File{}
	for _, d := range diags {
		if d.Subject == nil {
			continue
		}
		name := d.Subject.Filename
		if _, done := files[name]; done {
			continue
		}
		files[name] = nil
		if b, err := os.ReadFile(name); err == nil {
			files[name] = &hcl.File{Bytes: b}
		}
	}
	return files
}
