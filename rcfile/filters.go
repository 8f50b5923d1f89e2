package rcfile

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/popfetch/popfetch/deliver"
)

// MaxFilters bounds the filter blocks of an account: each one is a
// conversation per message.
const MaxFilters = 16

// Bounds of a filter's timeout: a scan of a large message by a busy
// filter takes seconds; past an hour the poll itself is stuck.
const (
	defFilterTimeout = 60 * time.Second
	minFilterTimeout = time.Second
	maxFilterTimeout = time.Hour
)

// filters checks and builds an account's filter blocks, in order. A
// filter with a problem is reported at the attribute that has it and
// left out.
func (p *parser) filters(in []*filterHCL, a *Account) []Filter {
	var out []Filter
	names := map[string]hcl.Range{}
	for i, f := range in {
		if i == MaxFilters {
			p.errorf(f.DefRange, "Too many filters",
				"account %q has more than %d filter blocks; popfetch runs at most %d per account.", a.Name, MaxFilters, MaxFilters)
			break
		}
		if prev, ok := names[f.Name]; ok {
			p.errorf(f.NameRange, "Duplicate filter name",
				"account %q already has a filter %q (at %s); each filter needs its own name, which the log and X-Popfetch-Reason report.", a.Name, f.Name, prev)
			continue
		}
		names[f.Name] = f.NameRange
		if flt, ok := p.filter(f); ok {
			out = append(out, flt)
			if flt.OnReject == OnRejectPostmaster && a.Postmaster == nil {
				p.warnf(f.DefRange, "No postmaster",
					"filter %q gives rejected messages to the postmaster (on_reject = \"postmaster\", the default), but account %q has no postmaster block: a rejected message stays on the server, retried every poll. Add one, e.g. postmaster { maildir = \"/var/mail/postmaster\" }.", f.Name, a.Name)
			}
		}
	}
	return out
}

// filter checks and builds one filter block.
func (p *parser) filter(f *filterHCL) (Filter, bool) {
	ok := true
	fail := func(rng hcl.Range, summary, format string, args ...any) {
		if !isSet(rng) {
			rng = f.DefRange
		}
		p.errorf(rng, summary, format, args...)
		ok = false
	}
	out := Filter{Name: f.Name, DeclRange: f.DefRange, OnUnavailable: OnUnavailableTempFail, OnReject: OnRejectPostmaster}
	// The name goes into X-Popfetch-Reason and the log: a short word.
	if f.Name == "" || len(f.Name) > 64 || !filterNameOK(f.Name) {
		fail(f.NameRange, "Invalid filter name",
			"A filter's name is 1 to 64 letters, digits or . _ - (it names the filter in the log and in X-Popfetch-Reason), not %q.", f.Name)
	}
	switch {
	case f.Milter != nil && f.Command != nil:
		fail(f.CommandRange, "Two filter kinds",
			"filter %q has both milter (at %s) and command; a filter is one or the other (write two filters for both).", f.Name, f.MilterRange)
	case f.Milter != nil:
		if err := checkMilterAddr(*f.Milter); err != nil {
			fail(f.MilterRange, "Invalid milter",
				"filter %q: %v; write \"inet:127.0.0.1:11332\", \"inet6:[::1]:11332\" or \"unix:/run/rspamd/milter.sock\".", f.Name, err)
		}
		out.Milter = *f.Milter
	case f.Command != nil:
		out.Command = slices.Clone(*f.Command)
		if !p.filterCommand(out.Command, f.CommandRange) {
			ok = false
		}
	default:
		if !isSet(f.MilterRange) && !isSet(f.CommandRange) {
			fail(f.DefRange, "Missing filter",
				"filter %q needs milter = \"inet:HOST:PORT\" (or \"unix:/path\") or command = [\"/path/to/program\", ...].", f.Name)
		}
		ok = false
	}
	out.Timeout = p.duration(f.Timeout, f.TimeoutRange, "timeout", defFilterTimeout, minFilterTimeout, maxFilterTimeout)
	if f.Milter != nil {
		for _, x := range []struct {
			set  bool
			rng  hcl.Range
			name string
		}{{f.TempExitCodes != nil, f.TempExitCodesRange, "temp_exit_codes"}, {f.RejectExitCodes != nil, f.RejectExitCodesRange, "reject_exit_codes"}} {
			if x.set {
				fail(x.rng, "Option needs command",
					"%s maps a command filter's exit status; filter %q is a milter, whose replies say what they mean.", x.name, f.Name)
			}
		}
	}
	codes := func(v *[]int, rng hcl.Range, name string, empty bool) []int {
		if v == nil {
			return nil
		}
		if len(*v) == 0 && !empty {
			fail(rng, "Invalid "+name, "%s needs at least one exit status, normally 75 (EX_TEMPFAIL).", name)
			return nil
		}
		for _, c := range *v {
			if c < 1 || c > 255 {
				fail(rng, "Invalid "+name, "%d is not an exit status a filter can mean this with; use numbers from 1 to 255 (0 is accept).", c)
				return nil
			}
		}
		return slices.Clone(*v)
	}
	out.TempExitCodes = codes(f.TempExitCodes, f.TempExitCodesRange, "temp_exit_codes", false)
	if out.TempExitCodes == nil {
		out.TempExitCodes = []int{75}
	}
	// reject_exit_codes = [] is the absent one's meaning spelt out.
	out.RejectExitCodes = codes(f.RejectExitCodes, f.RejectExitCodesRange, "reject_exit_codes", true)
	if len(out.RejectExitCodes) == 0 {
		out.RejectExitCodes = nil
	}
	for _, c := range out.RejectExitCodes {
		if slices.Contains(out.TempExitCodes, c) {
			fail(f.RejectExitCodesRange, "Exit status twice",
				"exit status %d is in both temp_exit_codes and reject_exit_codes of filter %q; it means one or the other.", c, f.Name)
			break
		}
	}
	if f.OnUnavailable != nil {
		switch v := *f.OnUnavailable; v {
		case OnUnavailableTempFail, OnUnavailableAccept:
			out.OnUnavailable = v
		default:
			fail(f.OnUnavailableRange, "Invalid on_unavailable",
				"on_unavailable is \"tempfail\" (the message stays on the server and is tried again) or \"accept\" (it is delivered unfiltered), not %q.", v)
		}
	}
	if f.OnReject != nil {
		switch v := *f.OnReject; v {
		case OnRejectPostmaster, OnRejectDelete:
			out.OnReject = v
		default:
			fail(f.OnRejectRange, "Invalid on_reject",
				"on_reject is \"postmaster\" (a copy with the reason goes to the postmaster) or \"delete\" (the message is dropped, logged), not %q.", v)
		}
	}
	return out, ok
}

// filterNameOK: letters, digits and . _ - (a name in a header field and
// a log key's value).
func filterNameOK(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkMilterAddr checks a milter address as Postfix writes it in
// smtpd_milters: inet:HOST:PORT, inet6:[HOST]:PORT or unix:/PATH.
func checkMilterAddr(addr string) error {
	kind, rest, ok := strings.Cut(addr, ":")
	if !ok || rest == "" {
		return fmt.Errorf("%q is not inet:HOST:PORT or unix:PATH", addr)
	}
	if strings.ContainsAny(rest, "\x00\r\n\t ") {
		return fmt.Errorf("%q contains white space or a control character", addr)
	}
	switch kind {
	case "unix", "local":
		if !filepath.IsAbs(rest) {
			return fmt.Errorf("the socket %q is not an absolute path", rest)
		}
		return nil
	case "inet", "inet6":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return fmt.Errorf("%q: host and port: %v", addr, err)
		}
		if host == "" {
			return fmt.Errorf("%q names no host", addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("the port in %q is not a number from 1 to 65535", addr)
		}
		if kind == "inet6" && !strings.HasPrefix(rest, "[") {
			return fmt.Errorf("an inet6 address is written with brackets, inet6:[HOST]:PORT, not %q", addr)
		}
		return nil
	}
	return fmt.Errorf("%q: unknown kind %q (inet, inet6, unix)", addr, kind)
}

// filterCommand checks a command filter's argv under the MDA's rules: an
// absolute program path (no shell, no $PATH search), no NUL, and {sender}
// as the only placeholder (a filter runs once per message, not per
// recipient), never inside a shell's -c script.
func (p *parser) filterCommand(argv []string, rng hcl.Range) bool {
	ok := true
	fail := func(format string, args ...any) {
		p.errorf(rng, "Invalid filter command", format, args...)
		ok = false
	}
	if len(argv) == 0 {
		fail(`command is a program and its arguments, e.g. ["/usr/bin/spamc", "-x"].`)
		return false
	}
	if !filepath.IsAbs(argv[0]) {
		fail("The program %q must be an absolute path such as \"/usr/bin/spamc\"; a filter runs without a shell or $PATH search.", argv[0])
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			fail("Argument %d contains a NUL byte.", i)
		}
		phs := deliver.MDAPlaceholders(a)
		if i == 0 && strings.ContainsRune(a, '{') {
			fail("The program path %q must not contain '{'.", a)
			continue
		}
		for _, x := range phs {
			if x.Text != "{sender}" {
				fail("command argument %q contains %s; a filter command's only placeholder is {sender} (it runs once per message, not per recipient).", a, x.Text)
			}
		}
	}
	if i := shellScript(argv); i > 0 {
		if len(deliver.MDAPlaceholders(argv[i])) > 0 {
			fail("command argument %d is the script of %s -c and contains {sender}; the shell would run the substituted value as code. Pass it as a positional parameter of the shell instead, e.g. [\"/bin/sh\", \"-c\", \"spamc -e \\\"$1\\\"\", \"sh\", \"{sender}\"].",
				i, filepath.Base(argv[0]))
		}
	}
	return ok
}

// trustedReceived checks a trusted_received block: at most one of by and
// position.
func (p *parser) trustedReceived(t *trustedHCL) TrustedReceived {
	if t == nil {
		return TrustedReceived{Position: 1}
	}
	out := TrustedReceived{Position: 1}
	if t.By != nil && t.Position != nil {
		p.errorf(t.PositionRange, "Two trusted fields",
			"trusted_received has both by (at %s) and position; it names the trusted Received: field one way, by the host that wrote it or by its place.", t.ByRange)
		return out
	}
	if t.Position != nil {
		if *t.Position < 1 || *t.Position > 100 {
			p.errorf(t.PositionRange, "Invalid position",
				"position counts Received: fields from the top, 1 being the topmost (the provider's last hop); %d is not from 1 to 100.", *t.Position)
		} else {
			out.Position = *t.Position
		}
	}
	if t.By != nil {
		by := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(*t.By)), ".")
		if !hostPatternOK(by) {
			p.errorf(t.ByRange, "Invalid by",
				"by is the host name the provider's MX writes in its Received: field (\"mx.google.com\", or \"*.outlook.com\" for any host under it), not %q.", *t.By)
		} else {
			out.By, out.Position = by, 0
		}
	}
	return out
}

// hostPatternOK: a host name, optionally with a leading "*." label.
func hostPatternOK(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
