package fetchmailrc

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/popfetch/popfetch/deliver"
)

// Options are what a conversion needs besides the file.
type Options struct {
	// User is the login name of the user the fetchmailrc belongs to:
	// fetchmail's server user name for an entry without "user".
	User string
}

// Note is one thing the conversion could not carry over exactly: it is
// written as a comment into the output and listed on stderr.
type Note struct {
	Line int // line in the fetchmailrc; 0 for the file as a whole
	Text string
}

func (n Note) String() string {
	if n.Line == 0 {
		return "fetchmailrc: " + n.Text
	}
	return fmt.Sprintf("fetchmailrc:%d: %s", n.Line, n.Text)
}

// Result is a converted file.
type Result struct {
	HCL       []byte
	Notes     []Note // each once, in line order
	Accounts  int    // accounts written (not commented out)
	Passwords int    // inline passwords copied into HCL
}

// Convert parses a fetchmailrc and writes the equivalent popfetch rc file.
// Every poll entry and user description becomes one account; every
// keyword that cannot be mapped becomes a Note (a comment in the account
// it belongs to, or at the top of the file), so nothing is dropped
// silently. Entries that popfetch cannot poll (skip, IMAP and other
// protocols) are written commented out.
func Convert(src []byte, o Options) (*Result, error) {
	f, err := Parse(src)
	if err != nil {
		return nil, err
	}
	c := &converter{opts: o, names: map[string]bool{}, seen: map[Note]bool{}}
	return c.convert(f), nil
}

type converter struct {
	opts   Options
	names  map[string]bool // account names taken
	notes  []Note          // every note, for stderr
	seen   map[Note]bool   // the notes already in notes
	global []Note          // notes for the top of the file
	res    Result

	daemon     int // set daemon, seconds; 0 = not set
	daemonLine int
	postmaster string // set postmaster
}

func (c *converter) note(dst *[]Note, line int, format string, args ...any) {
	n := Note{Line: line, Text: fmt.Sprintf(format, args...)}
	*dst = append(*dst, n)
	if !c.seen[n] {
		c.seen[n] = true
		c.notes = append(c.notes, n)
	}
}

func (c *converter) convert(f *File) *Result {
	c.globals(f.Set)
	var out bytes.Buffer
	var defs []Option
	var accounts [][]byte
	var unusedDefs []Option // defaults that no poll entry followed yet
	for _, e := range f.Polls {
		if e.Defaults {
			// A defaults entry applies to the entries after it; a later
			// one overrides what an earlier one set.
			defs = append(defs, e.Opts...)
			unusedDefs = append(unusedDefs, e.Opts...)
			for _, u := range e.Users {
				defs = append(defs, u.Opts...)
				unusedDefs = append(unusedDefs, u.Opts...)
			}
			continue
		}
		unusedDefs = nil
		users := e.Users
		if len(users) == 0 {
			users = []*User{{Line: e.Line}}
		}
		for _, u := range users {
			accounts = append(accounts, c.account(e, u, defs))
		}
	}
	for _, o := range unusedDefs {
		c.note(&c.global, o.Line, "%s: a default for no poll entry (none follows it); not converted", show(o))
	}
	out.WriteString("# popfetch rc file converted from a fetchmailrc by \"popfetch import fetchmailrc\".\n")
	out.WriteString("# Review every comment below before use; see popfetch.hcl(5).\n")
	for _, n := range c.global {
		out.WriteString(comment(n.String()))
	}
	for _, a := range accounts {
		out.WriteString("\n")
		out.Write(a)
	}
	c.res.HCL = hclwrite.Format(out.Bytes())
	slices.SortStableFunc(c.notes, func(a, b Note) int { return a.Line - b.Line })
	c.res.Notes = c.notes
	return &c.res
}

// comment makes s one comment line: any character that could end the
// line or hide in a terminal is escaped.
func comment(s string) string {
	return "# " + printable(s) + "\n"
}

func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// show is an option as written in the fetchmailrc, for a note; secrets
// are masked.
func show(o Option) string {
	parts := []string{o.Key}
	if o.No {
		parts = []string{"no", o.Key}
	}
	for _, a := range o.Args {
		switch {
		case o.Key == "pass" || o.Key == "esmtppassword":
			a = "********"
		case a == "" || strings.ContainsAny(a, " \t\"'#") || printable(a) != a:
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return "'" + strings.Join(parts, " ") + "'"
}

func (c *converter) globals(set []Option) {
	g := &c.global
	for _, o := range set {
		arg := ""
		if len(o.Args) > 0 {
			arg = o.Args[0]
		}
		switch o.Key {
		case "daemon":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 0 {
				c.note(g, o.Line, "%s: not a number of seconds; the accounts keep popfetch's default interval", show(o))
				continue
			}
			c.daemon, c.daemonLine = n, o.Line
		case "postmaster":
			c.postmaster = arg
			c.note(g, o.Line, "%s: becomes the postmaster block of the multidrop accounts (mail that matches no user); a single-drop account keeps what it cannot deliver on the server", show(o))
		case "logfile", "syslog":
			c.note(g, o.Line, "%s is not supported: popfetch logs to stderr (the journal under systemd); redirect it to a file if needed", show(o))
		case "idfile":
			c.note(g, o.Line, "%s is not supported: popfetch keeps seen UIDs in its own journal under state_dir; see README, \"Coming from fetchmail\", to carry them over", show(o))
		case "bouncemail":
			if o.No {
				c.note(g, o.Line, "%s: popfetch never bounces to the sender; mail it cannot deliver goes to the account's postmaster block or stays on the server", show(o))
			} else {
				c.note(g, o.Line, "%s is not supported: popfetch never bounces to the sender (the From address may be forged); mail it cannot deliver goes to the account's postmaster block or stays on the server", show(o))
			}
		case "softbounce":
			c.note(g, o.Line, "%s: popfetch never deletes mail it could not deliver; a permanent failure goes to the postmaster block, else the message stays on the server", show(o))
		default:
			c.note(g, o.Line, "%s is not supported: popfetch has no such setting", show(o))
		}
	}
	if c.daemon == 0 {
		c.note(g, 0, "no 'set daemon': fetchmail polled once per run; run \"popfetch fetch\" from cron the same way, or \"popfetch run\" to poll every interval (default 5m)")
	}
}

// reasons explains the options popfetch has no equivalent for.
var reasons = map[string]string{
	"flush":          "popfetch never deletes a message it has not delivered",
	"limitflush":     "popfetch never deletes a message it has not delivered; oversized ones stay on the server",
	"rewrite":        "popfetch never rewrites the headers of a message",
	"stripcr":        "popfetch delivers the message as it was received",
	"forcecr":        "popfetch delivers the message as it was received",
	"pass8bits":      "popfetch delivers the message as it was received",
	"dropstatus":     "popfetch delivers the message as it was received",
	"dropdelivered":  "popfetch delivers the message as it was received (a multidrop account reads Delivered-To for routing)",
	"mimedecode":     "popfetch delivers the message as it was received",
	"idle":           "IMAP only",
	"dns":            "popfetch never looks addresses up in DNS; local_domains alone decides",
	"checkalias":     "popfetch never looks addresses up in DNS; local_domains alone decides",
	"uidl":           "popfetch always uses UIDL and keeps its own journal",
	"fastuidl":       "popfetch always uses UIDL and keeps its own journal",
	"tracepolls":     "no equivalent",
	"principal":      "Kerberos is not supported",
	"esmtpname":      "popfetch's SMTP delivery does not authenticate",
	"esmtppassword":  "popfetch's SMTP delivery does not authenticate",
	"bad-header":     "no equivalent; popfetch delivers messages with malformed headers as they are",
	"sslcert":        "TLS client certificates are not supported",
	"sslkey":         "TLS client certificates are not supported",
	"sslcertpath":    "popfetch takes one PEM file: concatenate the certificates into one file and set ca_file",
	"sslcommonname":  "popfetch checks the certificate against the server name (or a tls_fingerprint pin)",
	"smtpaddress":    "popfetch chooses the RCPT TO address itself (see popfetch.hcl(5), smtp)",
	"smtpname":       "popfetch chooses the RCPT TO address itself (see popfetch.hcl(5), smtp)",
	"bsmtp":          "batch SMTP files are not supported",
	"preconnect":     "popfetch runs no command around a connection",
	"postconnect":    "popfetch runs no command around a connection",
	"plugin":         "popfetch connects directly (TCP and TLS only)",
	"plugout":        "popfetch connects directly (TCP only)",
	"properties":     "fetchmail ignores it too",
	"interface":      "no equivalent",
	"monitor":        "no equivalent",
	"warnings":       "popfetch logs each oversized message once",
	"batchlimit":     "popfetch opens one SMTP transaction per message",
	"fetchsizelimit": "popfetch asks for all sizes at once (LIST)",
	"expunge":        "popfetch records each delivery durably before DELE, so a broken session loses no deletion",
	"folder":         "POP3 has a single mailbox",
	"fetchdomains":   "no equivalent",
	"antispam":       "popfetch never bounces; a permanent SMTP refusal goes to the postmaster block",
	"qvirtual":       "only meaningful for a multidrop account",
	"localdomains":   "only meaningful for a multidrop account",
	"aka":            "only meaningful for a multidrop account",
	"envelope":       "only meaningful for a multidrop account",
}

// resolved holds the options in force for one user: the last one of each
// keyword wins (defaults, then the entry's, then the user's own).
type resolved struct {
	all  []Option
	last map[string]int
	used map[int]bool
}

func resolve(lists ...[]Option) *resolved {
	r := &resolved{last: map[string]int{}, used: map[int]bool{}}
	for _, l := range lists {
		for _, o := range l {
			r.last[o.Key] = len(r.all)
			r.all = append(r.all, o)
		}
	}
	return r
}

// get returns the option in force for key and marks it converted.
func (r *resolved) get(key string) (Option, bool) {
	i, ok := r.last[key]
	if !ok {
		return Option{}, false
	}
	r.used[i] = true
	return r.all[i], true
}

// set says whether key is in force and not negated ("keep" vs "no keep").
func (r *resolved) set(key string) (Option, bool) {
	o, ok := r.get(key)
	return o, ok && !o.No
}

func (o Option) arg() string {
	if len(o.Args) == 0 {
		return ""
	}
	return o.Args[len(o.Args)-1]
}

var (
	nameBad = regexp.MustCompile(`[^A-Za-z0-9._@+-]`)
	envBad  = regexp.MustCompile(`[^A-Za-z0-9]`)
)

// accountName is a unique popfetch account name for user@server.
func (c *converter) accountName(user, server string) string {
	n := nameBad.ReplaceAllString(user+"@"+server, "_")
	if n == "" || !isAlnum(n[0]) && n[0] != '_' {
		n = "_" + n
	}
	if len(n) > 60 {
		n = n[:60]
	}
	base := n
	for i := 2; c.names[n]; i++ {
		n = fmt.Sprintf("%s-%d", base, i)
	}
	c.names[n] = true
	return n
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

var envelopeHeaders = []string{"Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Received"}

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]*$`)

// account converts one user of a poll entry into an account block.
func (c *converter) account(e *Poll, u *User, defs []Option) []byte {
	r := resolve(defs, e.Opts, u.Opts)
	var notes []Note
	commentOut := ""
	f := hclwrite.NewEmptyFile()
	top := f.Body()

	server := e.Name
	if v, ok := r.get("via"); ok {
		server = v.arg()
	}
	remote := u.Remote
	if remote == "" {
		remote = c.opts.User
		c.note(&notes, u.Line, "no server user name: fetchmail used the local login name, taken as %q", remote)
	}
	name := c.accountName(remote, e.Name)
	b := top.AppendNewBlock("account", []string{name}).Body()

	// Protocol.
	auth := ""
	if p, ok := r.get("proto"); ok {
		switch strings.ToLower(p.arg()) {
		case "pop3":
		case "apop":
			auth = "apop"
		case "auto":
			c.note(&notes, p.Line, "%s: fetchmail tried IMAP first; converted as POP3", show(p))
		default:
			commentOut = fmt.Sprintf("%s is not supported: popfetch speaks POP3 only", show(p))
			c.note(&notes, p.Line, "%s", commentOut)
		}
	} else {
		c.note(&notes, e.Line, "no protocol given: fetchmail tried IMAP first, then POP3; converted as POP3")
	}
	if e.Skip {
		commentOut = "'skip': fetchmail polled this entry only when named on its command line; uncomment it to poll it"
		c.note(&notes, e.Line, "%s", commentOut)
	}
	b.SetAttributeValue("server", cty.StringVal(server))

	// TLS.
	tls := "starttls"
	_, ssl := r.set("ssl")
	proto, hasProto := r.get("sslproto")
	switch {
	case ssl:
		tls = "implicit"
	case hasProto && proto.arg() == "":
		tls = "none"
		c.note(&notes, proto.Line, "%s turned TLS off: tls = \"none\" sends the password in clear text", show(proto))
	case hasProto:
	default:
		c.note(&notes, e.Line, "no 'ssl' or 'sslproto': fetchmail used STARTTLS only if the server offered it; popfetch requires it (tls = \"starttls\")")
	}
	if hasProto && proto.arg() != "" {
		switch strings.ToLower(proto.arg()) {
		case "auto", "ssl23", "tls1+", "tls1.1+", "tls1.2+", "tls1.3+", "tls1.3":
		default:
			c.note(&notes, proto.Line, "%s: popfetch negotiates TLS 1.2 or later and nothing older", show(proto))
		}
	}
	b.SetAttributeValue("tls", cty.StringVal(tls))
	port := 0
	for _, k := range []string{"port", "service"} {
		if p, ok := r.get(k); ok {
			switch v := strings.ToLower(p.arg()); {
			case isNumber(v):
				n, err := strconv.Atoi(v)
				if err == nil && n > 0 && n < 65536 {
					port = n
				} else {
					c.note(&notes, p.Line, "%s is not a port number; the default port is used", show(p))
				}
			case v == "pop3s":
				port = 995
			case v == "pop3":
				port = 110
			default:
				c.note(&notes, p.Line, "%s: unknown service name; the default port is used", show(p))
			}
		}
	}
	if port != 0 {
		b.SetAttributeValue("port", cty.NumberIntVal(int64(port)))
	}
	if o, ok := r.get("sslcertfile"); ok {
		b.SetAttributeValue("ca_file", cty.StringVal(o.arg()))
	}
	if o, ok := r.get("sslcertck"); ok && o.No {
		c.note(&notes, o.Line, "%s is not supported: popfetch always verifies the server's certificate, or its tls_fingerprint pin instead", show(o))
	}
	if o, ok := r.get("sslfingerprint"); ok {
		p := port
		if p == 0 {
			p = map[string]int{"implicit": 995}[tls]
			if p == 0 {
				p = 110
			}
		}
		starttls := ""
		if tls == "starttls" {
			starttls = " -starttls pop3"
		}
		c.note(&notes, o.Line, "%s cannot be converted: it is an MD5 digest of the certificate, popfetch pins the SHA-256 of the public key (tls_fingerprint); get it with:", show(o))
		c.note(&notes, o.Line, "  openssl s_client -connect %s:%d%s -servername %s </dev/null 2>/dev/null | openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256", server, p, starttls, server)
	}

	b.SetAttributeValue("username", cty.StringVal(remote))
	if p, ok := r.get("pass"); ok {
		b.SetAttributeValue("password", cty.StringVal(p.arg()))
		c.res.Passwords++
	} else {
		env := "PASSWORD_" + strings.ToUpper(envBad.ReplaceAllString(name, "_"))
		b.SetAttributeValue("password_env", cty.StringVal(env))
		c.note(&notes, u.Line, "no password: fetchmail asked for it or read ~/.netrc; set $%s, or use password_file or password_command", env)
	}
	if a, ok := r.get("auth"); ok {
		switch v := strings.ToLower(a.arg()); v {
		case "any":
		case "password":
			auth = "user"
		case "apop":
			auth = "apop"
		default:
			c.note(&notes, a.Line, "%s is not supported: popfetch signs in with USER/PASS, APOP, PLAIN, SCRAM or OAuth2 (auth = \"auto\" picks the best the server offers)", show(a))
		}
	}
	if auth != "" {
		b.SetAttributeValue("auth", cty.StringVal(auth))
	}

	keep := false
	if o, ok := r.get("keep"); ok {
		keep = !o.No
		b.SetAttributeValue("keep", cty.BoolVal(keep))
	}
	if o, ok := r.set("fetchall"); ok {
		if keep {
			c.note(&notes, o.Line, "%s with keep is not converted: every \"popfetch fetch\" would deliver the whole mailbox again; set fetch_all = true for one run if needed", show(o))
		} else {
			b.SetAttributeValue("fetch_all", cty.True)
		}
	}
	for _, k := range []struct{ fm, pf string }{{"limit", "limit"}, {"fetchlimit", "fetch_limit"}} {
		if o, ok := r.get(k.fm); ok {
			if n, err := strconv.ParseInt(o.arg(), 10, 64); err == nil && n >= 0 && n < 1<<40 {
				if n > 0 {
					b.SetAttributeValue(k.pf, cty.NumberIntVal(n))
				}
			} else {
				c.note(&notes, o.Line, "%s is not a valid number; not converted", show(o))
			}
		}
	}
	if o, ok := r.get("timeout"); ok {
		n, err := strconv.Atoi(o.arg())
		if err == nil && n > 0 {
			n = min(max(n, 1), 3600)
			b.SetAttributeValue("timeout", cty.StringVal(fmt.Sprintf("%ds", n)))
		} else {
			c.note(&notes, o.Line, "%s is not a number of seconds; not converted", show(o))
		}
	}
	c.interval(b, r, &notes)

	// Multidrop or single drop.
	multi := len(u.Locals) > 1 || u.Wildcard
	for _, m := range u.Locals {
		multi = multi || m.Remote != ""
	}
	local := ""
	if !multi && len(u.Locals) == 1 {
		local = u.Locals[0].Local
	}
	mdaPlaceholder := "{user}"
	if !multi && local != "" {
		mdaPlaceholder = local
	}
	dest := c.deliver(r, &notes, mdaPlaceholder)
	if !multi && local != "" && local != c.opts.User && dest.smtp != nil {
		c.note(&notes, u.Line, "local name %q: popfetch's SMTP delivery of a single-drop account goes to the user popfetch runs as; run it as %s", local, local)
	}
	b.AppendNewline()
	dest.write(b.AppendNewBlock("deliver", nil).Body())
	if multi {
		c.multidrop(b, r, u, server, &notes)
		if c.postmaster != "" {
			pm := c.deliver(resolve(r.all), nil, c.postmaster)
			pm.write(b.AppendNewBlock("postmaster", nil).Body())
		} else {
			c.note(&notes, u.Line, "no 'set postmaster': mail that matches no user stays on the server; add a postmaster block to receive it")
		}
	}

	// Every option in force that nothing above converted.
	for i, o := range r.all {
		if r.used[i] || r.last[o.Key] != i {
			continue
		}
		if multi && (o.Key == "qvirtual" || o.Key == "localdomains" || o.Key == "aka" || o.Key == "envelope") {
			continue
		}
		reason := reasons[o.Key]
		if reason == "" {
			reason = "no equivalent"
		}
		if o.No {
			// "no stripcr", "no dns": turning a feature off that popfetch
			// does not have.
			c.note(&notes, o.Line, "%s: nothing to convert (%s)", show(o), reason)
			continue
		}
		c.note(&notes, o.Line, "%s is not supported: %s", show(o), reason)
	}

	var cm bytes.Buffer
	slices.SortStableFunc(notes, func(a, b Note) int { return a.Line - b.Line })
	for _, n := range notes {
		cm.WriteString(comment(n.String()))
	}
	body := hclwrite.Format(f.Bytes())
	if commentOut != "" {
		var out bytes.Buffer
		out.WriteString(comment(fmt.Sprintf("fetchmailrc:%d: entry %s, user %s, not converted: %s", e.Line, printable(e.Name), printable(remote), commentOut)))
		for _, l := range strings.SplitAfter(strings.TrimRight(string(body), "\n")+"\n", "\n") {
			if l != "" {
				out.WriteString("# " + l)
			}
		}
		out.Write(cm.Bytes())
		return out.Bytes()
	}
	c.res.Accounts++
	// The notes go at the top of the account block.
	i := bytes.IndexByte(body, '\n')
	return slices.Concat(body[:i+1], cm.Bytes(), body[i+1:])
}

func (c *converter) interval(b *hclwrite.Body, r *resolved, notes *[]Note) {
	secs := c.daemon
	if o, ok := r.get("interval"); ok {
		n, err := strconv.Atoi(o.arg())
		switch {
		case err != nil || n < 1:
			c.note(notes, o.Line, "%s is not a positive number; not converted", show(o))
		case secs == 0:
			c.note(notes, o.Line, "%s without 'set daemon' means nothing; not converted", show(o))
		default:
			secs *= n
		}
	}
	if secs == 0 {
		return
	}
	if secs < 30 {
		c.note(notes, c.daemonLine, "poll interval of %ds: popfetch polls at most every 30s", secs)
		secs = 30
	}
	if secs > 86400 {
		c.note(notes, c.daemonLine, "poll interval of %ds: popfetch polls at least every 24h", secs)
		secs = 86400
	}
	b.SetAttributeValue("interval", cty.StringVal(fmt.Sprintf("%ds", secs)))
}

// destination is one deliver or postmaster target.
type destination struct {
	mda  []string
	smtp *struct {
		server string
		lmtp   bool
	}
}

func (d destination) write(b *hclwrite.Body) {
	if d.mda != nil {
		b.SetAttributeValue("mda", stringList(d.mda))
		return
	}
	s := b.AppendNewBlock("smtp", nil).Body()
	s.SetAttributeValue("server", cty.StringVal(d.smtp.server))
	if d.smtp.lmtp {
		s.SetAttributeValue("lmtp", cty.True)
	}
}

func stringList(l []string) cty.Value {
	vs := make([]cty.Value, len(l))
	for i, s := range l {
		vs[i] = cty.StringVal(s)
	}
	return cty.ListVal(vs)
}

// deliver converts mda, or smtphost and lmtp (fetchmail's default is SMTP
// to localhost port 25). recipient replaces %T in the MDA command: a
// literal local name, or popfetch's {user}. notes is nil when the
// options were already reported.
func (c *converter) deliver(r *resolved, notes *[]Note, recipient string) destination {
	var scratch []Note
	if notes == nil {
		notes = &scratch
	}
	if o, ok := r.get("mda"); ok {
		for _, k := range []string{"smtphost", "lmtp"} {
			if s, ok := r.get(k); ok && notes != &scratch {
				c.note(notes, s.Line, "%s is not used: fetchmail delivers with the MDA when %s is set too", show(s), show(o))
			}
		}
		argv, why := mdaArgv(o.arg(), recipient)
		if why != "" {
			// Pasting addresses into a script whose quoting is not
			// understood could run the sender's text as shell: the
			// MDA is replaced by one that fails temporarily
			// (EX_TEMPFAIL), so mail waits on the server until the
			// admin writes it.
			if notes != &scratch {
				c.note(notes, o.Line, "%s is not converted: %s; the MDA is disabled (mail waits on the server): write the mda list by hand, passing the recipient and sender as \"$1\" and \"$2\" of /bin/sh -c", show(o), why)
			}
			argv = []string{"/bin/sh", "-c", "echo 'popfetch: mda not converted from fetchmailrc; see the import notes' >&2; exit 75", "sh"}
		}
		return destination{mda: argv}
	}
	_, lmtp := r.set("lmtp")
	d := destination{smtp: &struct {
		server string
		lmtp   bool
	}{"localhost:25", lmtp}}
	o, ok := r.get("smtphost")
	if !ok {
		if lmtp {
			d.smtp.server = "localhost:24"
			c.note(notes, 0, "'lmtp' without smtphost: fetchmail needs a port for LMTP; localhost:24 assumed")
		}
		return d
	}
	host := o.Args[0]
	if len(o.Args) > 1 && notes != &scratch {
		c.note(notes, o.Line, "%s: popfetch delivers to one server; only %s is used", show(o), host)
	}
	if strings.HasPrefix(host, "/") {
		d.smtp.server = host
		return d
	}
	h, p, hasPort := strings.Cut(host, "/")
	if !hasPort {
		p = "25"
		if lmtp {
			p = "24"
			c.note(notes, o.Line, "%s: LMTP needs a port; 24 assumed", show(o))
		}
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	d.smtp.server = h + ":" + p
	return d
}

// mdaArgv turns fetchmail's MDA command line, which it runs with
// /bin/sh -c after putting %T (the local recipients; %s is its older
// spelling) and %F (the sender) into it, into popfetch's argument list.
// The shell stays (the command may use its syntax), but the recipient and
// the sender are passed as positional parameters ("$1", "$2") instead of
// being pasted into the script, so no address can inject shell syntax.
//
// fetchmail (sink.c, open_mda_sink) pastes each value in single quotes of
// its own, after replacing any single quote in it by '_', and has no
// escape ("%%T" is "%" and then %T). So a placeholder outside quotes was
// one word holding the address: it becomes "$1". Inside single quotes
// fetchmail's quotes closed and reopened the string around the address:
// it becomes '"$1"', the same word for any ordinary address, without the
// splitting and expansion fetchmail's shell then did to it.
//
// why is not empty, and the caller must not use the command, where the
// result could differ from what fetchmail ran or let an address become
// syntax; it says which of these it is, for the note:
//   - a placeholder inside double quotes: fetchmail's single quotes were
//     literal there, so the MDA got the address with quotes around it,
//     and the text is usually a command line for another shell (sh -c,
//     su -c, ssh), which only the removal of single quotes from the
//     address kept from reading it as syntax;
//   - a placeholder inside a single-quoted string that holds more than
//     one plain word (a command line for another shell, as above);
//   - a backslash or '$' right before a placeholder, unbalanced quotes,
//     '#' outside quotes (a comment hides quotes), $'...' and $"..."
//     (quoting of bash and ksh), and nested quoting: $(...), `...`,
//     ${...}, here-documents;
//   - a line continuation outside single quotes (it joins characters
//     into syntax: $ and 1, < and <);
//   - anything that reads or changes the positional parameters the
//     script now has ($1 to $9, $#, $@, $*, set, shift, getopts, and
//     for or select without a word list) or runs text as shell code
//     (eval, trap);
//   - with or without placeholders, a {name} that popfetch itself would
//     replace in an mda argument (or reject as unknown): it would paste
//     a value into the script. A shell variable written ${NAME} outside
//     single quotes is not one: it becomes $NAME, the same to the shell.
func mdaArgv(cmd, recipient string) (argv []string, why string) {
	const (
		out = iota
		single
		double
	)
	isPlaceholder := func(i int) bool { return i+1 < len(cmd) && cmd[i] == '%' && fetchmailParams[cmd[i+1]] != "" }
	var b strings.Builder
	state, used := out, false
	// complex is the first reason not to convert, should a placeholder
	// be used.
	complex := ""
	fail := func(why string) {
		if complex == "" {
			complex = why
		}
	}
	const nested = "quoting popfetch cannot follow with certainty around it"
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		if state == out && c == '\'' && isPlaceholder(i+1) && i+3 < len(cmd) && cmd[i+3] == c {
			// The whole word '%T' reads better as plain "$1".
			b.WriteString(`"$` + fetchmailParams[cmd[i+2]] + `"`)
			i += 3
			used = true
			continue
		}
		if isPlaceholder(i) {
			n := fetchmailParams[cmd[i+1]]
			i++
			used = true
			switch state {
			case out:
				b.WriteString(`"$` + n + `"`)
			case double:
				fail("%T, %F or %s inside double quotes, where fetchmail's own single quotes around the address stayed in the argument")
			case single:
				b.WriteString(`'"$` + n + `"'`)
			}
			continue
		}
		switch {
		case c == '`' || c == '<' && strings.HasPrefix(cmd[i:], "<<"):
			// Quoting inside these is nested: not followed here.
			fail(nested)
		case c == '$' && state != single && i+1 < len(cmd) && cmd[i+1] == '$':
			// $$, the shell's process ID: the second '$' starts
			// nothing.
			b.WriteString("$$")
			i++
			continue
		case c == '$' && state != single && bracedVar(cmd[i:]) > 0:
			// ${NAME} is $NAME, which popfetch does not read as its
			// own {NAME} placeholder. "" keeps it from running into
			// what follows: a character of a name, or a backslash
			// (a line continuation would join the next line's).
			n := bracedVar(cmd[i:])
			b.WriteString("$" + cmd[i+2:i+n-1])
			if i+n < len(cmd) && (isNameByte(cmd[i+n]) || cmd[i+n] == '\\') {
				b.WriteString(`""`)
			}
			i += n - 1
			continue
		case c == '$' && state != single:
			// ${...} and $(...) nest quoting; $1..$9, $#, $@ and $*
			// are the parameters the script now has; $'...' and
			// $"..." are bash's and ksh's quoting; before a
			// placeholder fetchmail made $'...' of it; a backslash
			// may start a line continuation that joins the '$' to
			// any of these.
			if i+1 < len(cmd) && strings.IndexByte("#@*0123456789", cmd[i+1]) >= 0 {
				fail(mdaParams)
			} else if i+1 < len(cmd) && (strings.IndexByte("({%\\", cmd[i+1]) >= 0 || state == out && (cmd[i+1] == '\'' || cmd[i+1] == '"')) {
				fail(nested)
			}
		case c == '\\' && state != single && i+1 < len(cmd) && cmd[i+1] == '\n':
			// A line continuation joins what is around it ($ and 1,
			// < and <) into syntax the checks here do not see.
			fail(nested)
		case c == '#' && state == out:
			fail(nested)
		case state == out && c == '\\':
			if i+1 < len(cmd) && cmd[i+1] == '%' {
				// fetchmail replaces what follows; the shell then
				// reads the backslash before fetchmail's quote.
				fail(nested)
			} else if i+1 < len(cmd) {
				b.WriteByte(c)
				i++
				c = cmd[i]
			}
		case state == double && c == '\\':
			if i+1 < len(cmd) && strings.IndexByte("$`\"\\\n", cmd[i+1]) >= 0 {
				b.WriteByte(c)
				i++
				c = cmd[i]
			}
		case state == out && c == '\'':
			state = single
			// A single-quoted string with a placeholder must be one
			// plain word.
			if end := strings.IndexByte(cmd[i+1:], '\''); end >= 0 {
				if q := cmd[i+1 : i+1+end]; hasFetchmailParam(q) && strings.Trim(q, mdaWordChars) != "" {
					fail("%T, %F or %s inside a single-quoted command line, which another shell reads")
				}
			}
		case state == single && c == '\'':
			state = out
		case state == out && c == '"':
			state = double
		case state == double && c == '"':
			state = out
		}
		b.WriteByte(c)
	}
	if state != out {
		fail("unbalanced quotes")
	}
	// The words are looked for with quotes and backslashes removed, as
	// the shell reads s'e't.
	if mdaWordRE.MatchString(strings.NewReplacer("'", "", `"`, "", `\`, "").Replace(cmd)) {
		fail(mdaParams)
	}
	if used && complex != "" {
		return nil, complex
	}
	if ph := deliver.MDAPlaceholders(b.String()); len(ph) > 0 {
		return nil, fmt.Sprintf("it holds %s, which popfetch would read as its own placeholder", ph[0].Text)
	}
	argv = []string{"/bin/sh", "-c", b.String(), "sh"}
	if used {
		argv = append(argv, recipient, "{sender}")
	}
	return argv, ""
}

// bracedVar returns the length of the "${NAME}" s starts with (NAME a
// shell variable's name, POSIX XCU 2.5.2: not a positional or special
// parameter, no operator), or 0.
func bracedVar(s string) int {
	if !strings.HasPrefix(s, "${") || len(s) < 4 || !isNameByte(s[2]) || s[2] >= '0' && s[2] <= '9' {
		return 0
	}
	for i := 3; i < len(s); i++ {
		switch {
		case s[i] == '}':
			return i + 1
		case !isNameByte(s[i]):
			return 0
		}
	}
	return 0
}

// isNameByte reports whether c may be part of a shell variable's name.
func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// mdaParams is why a command that uses the shell's positional parameters
// or runs text as code is not converted.
const mdaParams = "it uses the shell's positional parameters, which now hold the addresses, or runs text as shell code (eval, trap)"

// mdaWordChars are the characters of a plain word around a placeholder in
// single quotes: no blank and nothing another shell would read as syntax.
const mdaWordChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%._+=,:/-"

// fetchmailParams are fetchmail's MDA placeholders (%T, its older
// spelling %s, and %F), by the letter after the '%', with the positional
// parameter each becomes.
var fetchmailParams = map[byte]string{'T': "1", 's': "1", 'F': "2"}

// hasFetchmailParam reports whether s holds one of fetchmailParams.
func hasFetchmailParam(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '%' && fetchmailParams[s[i+1]] != "" {
			return true
		}
	}
	return false
}

// mdaWordRE finds the shell commands that read or change the positional
// parameters or run text as shell code (see mdaArgv), as whole words.
var mdaWordRE = regexp.MustCompile(`(^|[^A-Za-z0-9_-])(set|shift|getopts|for|select|eval|trap)($|[^A-Za-z0-9_-])`)

func (c *converter) multidrop(b *hclwrite.Body, r *resolved, u *User, server string, notes *[]Note) {
	m := b.AppendNewBlock("multidrop", nil).Body()
	var domains []string
	for _, k := range []string{"localdomains", "aka"} {
		if o, ok := r.get(k); ok {
			domains = append(domains, o.Args...)
		}
	}
	if len(domains) == 0 {
		domains = []string{server}
		c.note(notes, u.Line, "no 'localdomains' or 'aka': fetchmail took addresses at the server's own name as local; set local_domains to your domains")
	}
	m.SetAttributeValue("local_domains", stringList(domains))
	if o, ok := r.get("envelope"); ok {
		if o.No {
			m.SetAttributeValue("envelope_header", cty.StringVal(""))
		} else {
			h := o.Args[len(o.Args)-1]
			i := slices.IndexFunc(envelopeHeaders, func(s string) bool { return strings.EqualFold(s, h) })
			if i < 0 {
				c.note(notes, o.Line, "%s: popfetch reads only %s; the default Delivered-To is used", show(o), strings.Join(envelopeHeaders, ", "))
			} else {
				m.SetAttributeValue("envelope_header", cty.StringVal(envelopeHeaders[i]))
				if envelopeHeaders[i] == "Received" {
					m.SetAttributeValue("received_by", cty.StringVal(server))
					c.note(notes, o.Line, "%s: received_by is set to the server's name; make it the host name in the provider's own Received line", show(o))
				}
			}
			if len(o.Args) == 2 {
				skip, _ := strconv.Atoi(o.Args[0])
				if skip > 0 && skip < 100 {
					m.SetAttributeValue("envelope_count", cty.NumberIntVal(int64(skip+1)))
					c.note(notes, o.Line, "%s: fetchmail skipped the first %d header(s); popfetch trusts the topmost %d: add the address the skipped one names (often the mailbox itself) to envelope_ignore", show(o), skip, skip+1)
				}
			}
		}
	} else {
		c.note(notes, u.Line, "no 'envelope': fetchmail parsed Received lines; popfetch reads Delivered-To (see envelope_header)")
	}
	if o, ok := r.get("qvirtual"); ok {
		m.SetAttributeValue("qvirtual", cty.StringVal(o.arg()))
	}
	if u.Wildcard {
		m.SetAttributeValue("system_users", cty.True)
		c.note(notes, u.Line, "'*': fetchmail passed unknown names through; popfetch takes every user of this system (system_users = true), others go to the postmaster")
	}
	// One user block per local name, with the server names mapped to it.
	type user struct {
		name  string
		addrs []string
	}
	var users []*user
	byName := map[string]*user{}
	for _, mp := range u.Locals {
		if !userNameRE.MatchString(mp.Local) || len(mp.Local) > 64 {
			c.note(notes, u.Line, "local name %q is not a valid popfetch user name; not converted", printable(mp.Local))
			continue
		}
		x := byName[mp.Local]
		if x == nil {
			x = &user{name: mp.Local}
			byName[mp.Local] = x
			users = append(users, x)
		}
		a := mp.Remote
		if a == "" {
			a = mp.Local
		}
		if !slices.Contains(x.addrs, a) {
			x.addrs = append(x.addrs, a)
		}
	}
	for _, x := range users {
		ub := m.AppendNewBlock("user", []string{x.name}).Body()
		if len(x.addrs) != 1 || x.addrs[0] != x.name {
			ub.SetAttributeValue("addresses", stringList(x.addrs))
		}
	}
}
