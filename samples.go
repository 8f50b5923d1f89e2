// Package popfetch holds the sample messages in testdata/mail, embedded so
// that `popfetch demo` works from the binary alone and shows the same mail
// the tests use. The program itself is in cmd/popfetch; the packages are
// rcfile, fetch, deliver and uidl.
package popfetch

import "embed"

// SampleMail is testdata/mail: single/ for a personal mailbox, domain/ for a
// multidrop domain mailbox. Messages have CRLF line endings, as on the wire.
//
//go:embed testdata/mail
var SampleMail embed.FS
