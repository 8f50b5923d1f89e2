package rcfile

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// Format writes the effective configuration: every account with every
// default and inherited value filled in, in HCL syntax, for "popfetch
// check". Passwords are shown only by their source (Password.String).
// The output parses again with Parse, though paths are then absolute.
func (c *Config) Format(w io.Writer) error {
	top := &node{}
	if c.Path != "" {
		top.comment = "# Effective settings of " + c.Path + ", with every default applied."
	}
	top.attr("state_dir", hclString(c.StateDir))
	top.attr("max_parallel", strconv.Itoa(c.MaxParallel))
	top.attr("per_server", strconv.Itoa(c.PerServer))
	for _, a := range c.Accounts {
		n := top.block("account " + hclString(a.Name))
		n.attr("server", hclString(a.Server))
		n.attr("port", strconv.Itoa(a.Port))
		n.attr("tls", hclString(string(a.TLS)))
		n.attr("ca_file", hclString(a.CAFile))
		n.attr("tls_fingerprint", hclString(a.Fingerprint))
		n.attr("username", hclString(a.Username))
		k, v, _ := strings.Cut(a.Password.String(), " = ")
		n.attr(k, v)
		n.attr("keep", strconv.FormatBool(a.Keep))
		n.attr("fetch_all", strconv.FormatBool(a.FetchAll))
		n.attr("limit", strconv.FormatInt(a.Limit, 10))
		n.attr("fetch_limit", strconv.Itoa(a.FetchLimit))
		n.attr("timeout", hclString(fmtDuration(a.Timeout)))
		n.attr("interval", hclString(fmtDuration(a.Interval)))
		n.attr("state_dir", hclString(a.StateDir))
		if a.MailboxID != "" {
			n.attr("mailbox_id", hclString(a.MailboxID))
		}
		formatDest(n.block("deliver"), &a.Deliver)
		if a.Postmaster != nil {
			formatDest(n.block("postmaster"), a.Postmaster)
		}
		if m := a.Multidrop; m != nil {
			mn := n.block("multidrop")
			mn.attr("local_domains", hclList(m.LocalDomains))
			mn.attr("envelope_header", hclString(m.EnvelopeHeader))
			mn.attr("envelope_count", strconv.Itoa(m.EnvelopeCount))
			mn.attr("received_by", hclString(m.ReceivedBy))
			mn.attr("envelope_ignore", hclList(m.EnvelopeIgnore))
			mn.attr("fallback_headers", hclList(m.FallbackHeaders))
			mn.attr("detail_delimiter", hclString(m.DetailDelimiter))
			mn.attr("case_sensitive", strconv.FormatBool(m.CaseSensitive))
			mn.attr("aliases_file", hclString(m.AliasesFile))
			mn.attr("system_users", strconv.FormatBool(m.SystemUsers))
			mn.attr("qvirtual", hclString(m.QVirtual))
			mn.attr("dedupe_message_id", strconv.FormatBool(m.DedupeMessageID))
			for _, u := range m.Users {
				un := mn.block("user " + hclString(u.Name))
				un.attr("addresses", hclList(u.Addresses))
				if u.Deliver != nil {
					formatDest(un.block("deliver"), u.Deliver)
				}
			}
		}
	}
	return top.write(w, "")
}

func formatDest(n *node, d *Destination) {
	switch {
	case d.Maildir != "":
		n.attr("maildir", hclString(d.Maildir))
	case d.MDA != nil:
		n.attr("mda", hclList(d.MDA))
		n.attr("mda_timeout", hclString(fmtDuration(d.MDATimeout)))
		n.attr("mda_allow_stderr", strconv.FormatBool(d.MDAAllowStderr))
		n.attr("mda_temp_exit_codes", hclInts(d.MDATempExitCodes))
	case d.SMTP != nil:
		s := n.block("smtp")
		s.attr("server", hclString(d.SMTP.Server))
		s.attr("lmtp", strconv.FormatBool(d.SMTP.LMTP))
		s.attr("helo", hclString(d.SMTP.Helo))
		s.attr("tls", hclString(string(d.SMTP.TLS)))
		s.attr("ca_file", hclString(d.SMTP.CAFile))
		s.attr("sender", hclString(d.SMTP.Sender))
		s.attr("timeout", hclString(fmtDuration(d.SMTP.Timeout)))
	}
}

// node is a block being printed; hclwrite would do this, but it pulls in
// a module missing from go.sum (see decode.go).
type node struct {
	head    string
	comment string
	keys    []string
	vals    []string
	kids    []*node
}

func (n *node) attr(k, v string) { n.keys = append(n.keys, k); n.vals = append(n.vals, v) }

func (n *node) block(head string) *node {
	k := &node{head: head}
	n.kids = append(n.kids, k)
	return k
}

// write prints attributes with aligned "=" like hclfmt, then blocks.
func (n *node) write(w io.Writer, indent string) error {
	if n.comment != "" {
		if _, err := fmt.Fprintf(w, "%s%s\n", indent, n.comment); err != nil {
			return err
		}
	}
	width := 0
	for _, k := range n.keys {
		width = max(width, len(k))
	}
	for i, k := range n.keys {
		if _, err := fmt.Fprintf(w, "%s%-*s = %s\n", indent, width, k, n.vals[i]); err != nil {
			return err
		}
	}
	for _, k := range n.kids {
		if _, err := fmt.Fprintf(w, "\n%s%s {\n", indent, k.head); err != nil {
			return err
		}
		if err := k.write(w, indent+"  "); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s}\n", indent); err != nil {
			return err
		}
	}
	return nil
}

// hclString quotes s as an HCL string literal. Unlike strconv.Quote it
// escapes the template introducers ${ and %{, which HCL would otherwise
// evaluate when the output is read back.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		case r == unicode.ReplacementChar || !unicode.IsPrint(r):
			if r > 0xFFFF {
				fmt.Fprintf(&b, `\U%08X`, r)
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hclInts(l []int) string {
	q := make([]string, len(l))
	for i, n := range l {
		q[i] = strconv.Itoa(n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func hclList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = hclString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
