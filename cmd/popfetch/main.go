// Command popfetch fetches mail from POP3 mailboxes and delivers it locally:
// to a Maildir, through an MDA or over SMTP/LMTP, with multidrop routing for
// a domain. See popfetch(1) and popfetch.hcl(5).
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
