package deliver

import (
	"fmt"
	"strconv"
	"strings"
)

// Multidrop routing: one catch-all POP3 mailbox is split among local users
// by the message header. The rules: the envelope header the provider wrote
// comes first, guessing from To/Cc only when configured; only configured
// local users receive mail, nothing is relayed off-host; what cannot be
// routed goes to the postmaster, never dropped; each user gets one copy;
// parsing is bounded in bytes, count and time. RouteHeader is a pure
// function of the header bytes and the Rules, so every decision is table-
// and fuzz-testable (testdata/route/cases.txt); the fetch package delivers
// to Route.Rcpts, and to the postmaster with Route.Reason when Rcpts is
// empty or the route is partial.

// Rules is the routing policy of one multidrop account (translated from
// rcfile.Multidrop by the fetch package). The zero value of a field means
// what its comment says; defaults of the rc file are applied by the
// translator, except EnvelopeCount and MaxRecipients whose zero means the
// default here too.
type Rules struct {
	LocalDomains   []string // lower-case A-labels; "*.example.com" matches the subdomains of example.com, not example.com itself
	EnvelopeHeader string   // "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Received", or "" (none)
	EnvelopeCount  int      // trust only the topmost N occurrences (default 1; lower ones can be forged by the sender); for "Received", only the topmost N Received lines
	// EnvelopeIgnore are addresses an envelope header names on every
	// message, so they say nothing about its recipient: the catch-all
	// mailbox itself (a Postfix virtual catch-all stamps
	// "Delivered-To: catchall@example.com" on all mail). They are never
	// recipients, and an envelope header naming only these counts as
	// absent.
	EnvelopeIgnore  []string
	ReceivedBy      string   // for "Received": only a Received line whose "by" host equals this counts ("" = any)
	FallbackHeaders []string // e.g. To, Cc, Resent-To, Resent-Cc, Apparently-To; empty = no guessing
	DetailDelimiter string   // "+" usually; "" = none; strips "joe+lists" → "joe" when "joe+lists" is not mapped itself
	CaseSensitive   bool     // local parts; domains are always case-insensitive. Keep equal to the Directory's setting
	QVirtual        string   // qmail prefix stripped from envelope local parts: "example-com-" + "joe@isp" → "joe"
	Directory       *Directory
	MaxRecipients   int // cap on addresses examined (default 1000); beyond it, route what was found and say so in Reason
}

// Route is the routing decision for one message.
//
// Rcpts empty means: deliver to the postmaster, with Reason as the
// X-Popfetch-Reason (never drop the message). Rcpts non-empty with a
// non-empty Reason is a partial route (Partial): the message goes to Rcpts,
// and Reason says what was not routed (unknown users, unparseable
// addresses, the recipient or user cap, a header cut at MaxHeaderBytes, a
// loop for some recipients), so that the postmaster gets a copy too.
type Route struct {
	Rcpts   []Recipient // one per local user, in first-seen order
	Via     string      // "envelope Delivered-To", "header To/Cc", ...
	Reason  string      // why nothing (or not everything) was routed
	Unknown []string    // local-domain addresses with no user
	// Loop is set when the message is quarantined as a mail loop: every
	// local recipient was dropped because popfetch delivered this message
	// to that address before (see collectLoopMarkers), or the message
	// already passed through popfetch MaxPopfetchHops times. Rcpts is then
	// empty and Reason starts with "mail loop". Recommended handling:
	// deliver to the postmaster (or a quarantine Maildir) once and DELE,
	// like any unroutable message. Re-routing it to the users would
	// continue the loop, and leaving it on the server would refetch it
	// every poll.
	Loop bool
}

// Partial reports whether the message goes to some users while something
// else named in it was not routed (Reason says what): the postmaster
// should get a copy too, or the rest is dropped without a trace.
func (r Route) Partial() bool { return len(r.Rcpts) > 0 && r.Reason != "" }

// Limits of RouteHeader (CVE-2002-1174, CVE-2002-1365).
const (
	MaxHeaderBytes       = 1 << 20 // header bytes read; the rest is ignored and noted
	DefaultMaxRecipients = 1000
	// MaxRoutedUsers caps the users one message is delivered to; the
	// others are named in Reason (a partial route, so the postmaster gets
	// the message for them). The UIDL store keeps at most
	// uidl.MaxRecipients (1000) progress records per message, one per user
	// plus one for the postmaster: an alias expanding past that could never
	// be recorded as done, so the message would never be deleted and the
	// users past the cap would get it again every poll.
	MaxRoutedUsers = 500
	// MaxPopfetchHops is how many of popfetch's own Received fields a
	// message may carry before it is quarantined as a loop: a loop through
	// SMTP or a forward adds no Delivered-To of popfetch's own, but every
	// trip through popfetch adds its Received field.
	MaxPopfetchHops = 3
	// maxGoParse bounds the pieces handed to go-message's parser (see the
	// top of address.go); longer ones go to the linear own parser. 998 is
	// RFC 5322 §2.1.1's line limit: a real mailbox fits.
	maxGoParse   = 998
	maxLocalPart = 64  // RFC 5321 §4.5.3.1.1
	maxDomain    = 255 // RFC 5321 §4.5.3.1.2
	maxListed    = 5   // addresses named in Reason before "and N more"
	maxSnippet   = 60  // bytes of a bad address quoted in Reason
)

// envelopeHeaders and fallbackHeaders are the only header fields routing
// ever reads addresses from.
var (
	envelopeHeaders = map[string]bool{"Delivered-To": true, "X-Original-To": true, "Envelope-To": true, "X-Envelope-To": true, "Received": true}
	fallbackHeaders = map[string]bool{"To": true, "Cc": true, "Resent-To": true, "Resent-Cc": true, "Apparently-To": true}
)

// router carries the state of one RouteHeader call.
type router struct {
	r        *Rules
	domains  []string // LocalDomains normalised; wildcards keep "*."
	max      int
	examined int
	capped   bool

	route    Route
	users    map[string]bool
	overCap  []string // users past MaxRoutedUsers
	unknown  map[string]bool
	bad      []string // `To: "snippet"` of unparseable addresses
	loops    []string // addresses dropped as a loop
	loopSet  map[string]bool
	hops     int             // popfetch's own Received fields
	ignore   map[string]bool // EnvelopeIgnore, as addrKey
	ignored  []string        // envelope addresses skipped by ignore
	local    bool            // the current source named a local-domain address
	viaHdrs  []string
	details  []string // why nothing was found, for "no local recipient found (...)"
	viaSeen  map[string]bool
	fallback bool
	fbNames  []string // the accepted FallbackHeaders, canonical
	learned  bool     // a learned address routed a recipient
	byListID bool     // the learned List-Id routed the message
}

// RouteHeader routes a message by its header section (raw may be the whole
// message; reading stops at the first empty line and after MaxHeaderBytes).
//
// Order (envelope first, then guessing only as configured):
//  1. The envelope header, if configured: only its topmost EnvelopeCount
//     occurrences (lower ones are part of what the sender wrote). For
//     "Received", only the topmost EnvelopeCount Received lines, of those
//     only lines whose "by" host is ReceivedBy, and only a single
//     uncommented "for <addr>" clause. Addresses in EnvelopeIgnore (the
//     catch-all mailbox itself) are skipped. An envelope that names any
//     other address in a local domain is authoritative, even if that user
//     is unknown: the provider said whom this copy is for, and guessing
//     from To/Cc would hand Bcc copies to the wrong user and duplicate
//     copies the provider stored for the To recipients themselves.
//  2. Otherwise (no envelope header, or one naming only ignored or
//     non-local addresses) the FallbackHeaders in header order (never
//     From, Reply-To or Sender).
//
// Only addresses in LocalDomains that the Directory maps are delivered,
// and addresses outside them that the Directory has learned (a learned
// route, named in Via); everything else is ignored (never relayed
// off-host). A learned address in the envelope is a local recipient for
// rule 1. When all this finds no recipient (and the message is not a
// loop), a learned List-Id identifier in the topmost List-Id field routes
// it (Via "learned List-Id"). Display names and
// comments are never scraped for addresses. The result never contains a
// user twice, nor more than MaxRoutedUsers users. Recipients popfetch
// already delivered this message to are dropped as a loop.
func RouteHeader(raw []byte, r *Rules) Route {
	if r == nil {
		r = &Rules{}
	}
	rt := &router{
		r:       r,
		max:     r.MaxRecipients,
		users:   make(map[string]bool),
		unknown: make(map[string]bool),
		loopSet: make(map[string]bool),
		viaSeen: make(map[string]bool),
	}
	if rt.max <= 0 {
		rt.max = DefaultMaxRecipients
	}
	for _, ig := range r.EnvelopeIgnore {
		if a, ok := parseMailbox(ig); ok && !a.empty {
			if rt.ignore == nil {
				rt.ignore = make(map[string]bool)
			}
			rt.ignore[rt.addrKey(a)] = true
		}
	}
	for _, ld := range r.LocalDomains {
		ld = strings.TrimSpace(ld)
		wild := strings.HasPrefix(ld, "*.")
		if n, ok := NormalizeDomain(strings.TrimPrefix(ld, "*.")); ok {
			if wild {
				n = "*." + n
			}
			rt.domains = append(rt.domains, n)
		}
	}
	fs, truncated := readHeader(raw)
	if len(fs) == 0 {
		// CVE-2005-4348: a headerless message goes to the postmaster.
		rt.route.Reason = "no headers"
		if truncated {
			rt.route.Reason = "no headers (header section larger than 1 MiB)"
		}
		return rt.route
	}

	envIdx := rt.envelope(fs)
	rt.collectLoopMarkers(fs, envIdx)

	if len(rt.route.Rcpts) == 0 && !rt.local {
		rt.fallbackHeaders(fs)
	}
	rt.applyLoops()
	if len(rt.route.Rcpts) == 0 && len(rt.loops) == 0 && rt.hops < MaxPopfetchHops {
		rt.listID(fs)
	}
	rt.finish(truncated)
	return rt.route
}

// listID routes a message no address routed by its List-Id identifier,
// if the Directory learned it. The recipient's domain is the first local
// domain, as for a learned address outside them (see add).
func (rt *router) listID(fs header) {
	v, ok := fs.first("List-Id")
	if !ok {
		return
	}
	id, ok := parseListID(v)
	if !ok {
		return
	}
	u, ok := rt.r.Directory.learnedListID(id)
	dom := rt.firstLocalDomain()
	if !ok || dom == "" {
		return
	}
	rt.users[u] = true
	rt.route.Rcpts = append(rt.route.Rcpts, Recipient{User: u, Address: u + "@" + dom, Domain: dom})
	rt.byListID = true
}

// envelope routes by the configured envelope header and returns the
// indexes of the fields it trusted (so loop detection does not count the
// provider's own stamp).
func (rt *router) envelope(fs []field) map[int]bool {
	used := make(map[int]bool)
	name := rt.r.EnvelopeHeader
	if name == "" {
		return used
	}
	key := canonical(name)
	if !envelopeHeaders[key] {
		// A typo or "From" in the configuration must not turn the
		// sender's own header into the routing source.
		rt.details = append(rt.details, "unsupported envelope header "+snippet(name)+" ignored")
		return used
	}
	n := rt.r.EnvelopeCount
	if n <= 0 {
		n = 1
	}
	rt.route.Via = "envelope " + key
	by := strings.TrimSuffix(strings.ToLower(rt.r.ReceivedBy), ".")
	matched := 0
	for i, f := range fs {
		if n == 0 || rt.capped {
			break
		}
		if key != "Received" && f.key == "Received" {
			// Delivered-To, X-Original-To, Envelope-To and
			// X-Envelope-To are prepended at final delivery (Postfix
			// local(8)/virtual(8), qmail-local, Exim envelope_to_add,
			// Dovecot LMTP), above every Received line. One below the
			// topmost Received was written by the sender or an earlier
			// hop: trusting it would let a sender who writes
			// "Delivered-To: root@example.com" into the message get it
			// delivered to root.
			break
		}
		if f.key != key {
			continue
		}
		// Counted before the "by" check: only the topmost N lines
		// were written by the provider. If its own line does not
		// match received_by (a changed host name, a new internal
		// relay), looking further down would reach lines the sender
		// wrote, which may say "by mx.isp.example for <root@...>".
		n--
		if key == "Received" {
			host, ok := receivedBy(f.value)
			if by != "" && (!ok || host != by) {
				continue
			}
			used[i] = true
			matched++
			addr, ok := receivedFor(f.value)
			if !ok {
				rt.details = append(rt.details, "no single for clause in Received by "+snippet(rt.r.ReceivedBy))
				continue // missing, several or commented "for": no result
			}
			rt.list(addr, "Received", true)
			continue
		}
		used[i] = true
		matched++
		rt.list(f.value, key, true)
	}
	switch {
	case matched == 0 && key == "Received":
		where := "the topmost Received line"
		if c := rt.r.EnvelopeCount; c > 1 {
			where = fmt.Sprintf("the topmost %d Received lines", c)
		}
		if by == "" {
			rt.details = append(rt.details, "no Received line")
		} else {
			rt.details = append(rt.details, "no Received by "+snippet(rt.r.ReceivedBy)+" in "+where)
		}
	case matched == 0 && hasReceived(fs):
		rt.details = append(rt.details, "no "+key+" header above the first Received")
	case matched == 0:
		rt.details = append(rt.details, "no "+key+" header")
	case len(rt.ignored) > 0 && !rt.local:
		rt.details = append(rt.details, key+" names only the mailbox itself ("+listSome(rt.ignored)+")")
	}
	return used
}

func hasReceived(fs []field) bool {
	for _, f := range fs {
		if f.key == "Received" {
			return true
		}
	}
	return false
}

// fallbackHeaders guesses recipients from the configured To-like headers.
func (rt *router) fallbackHeaders(fs []field) {
	if len(rt.r.FallbackHeaders) == 0 {
		rt.details = append(rt.details, "header guessing off")
		return
	}
	want := make(map[string]bool, len(rt.r.FallbackHeaders))
	for _, h := range rt.r.FallbackHeaders {
		if k := canonical(h); fallbackHeaders[k] {
			if !want[k] {
				want[k] = true
				rt.fbNames = append(rt.fbNames, k)
			}
		} else {
			// Never route by From, Reply-To or Sender: the sender
			// writes them.
			rt.details = append(rt.details, "unsupported fallback header "+snippet(h)+" ignored")
		}
	}
	if len(want) == 0 {
		return
	}
	rt.fallback = true
	found := false
	for _, f := range fs {
		if rt.capped {
			break
		}
		if want[f.key] {
			found = true
			rt.list(f.value, f.key, false)
		}
	}
	if !found {
		rt.details = append(rt.details, "no "+strings.Join(rt.fbNames, "/")+" header")
	}
}

// collectLoopMarkers finds the traces of earlier trips through popfetch.
// Every copy popfetch delivers starts with its own Received field ("by
// HOST with POP3 (popfetch VERSION)", header.go), and the recipient's
// Delivered-To directly below it (maildir.go, mda.go, and smtp.go for a
// single-RCPT transaction write them in that order); a multi-RCPT SMTP
// copy has none of its own, so the field below is the provider's stamp of
// that earlier trip. Such a Delivered-To names an address this message
// was already delivered to.
// Any other Delivered-To is not evidence of a loop: providers differ in
// whether they write their Received above or below their Delivered-To,
// and a sender can write any number of them. The popfetch Received fields
// are counted too (hops), for loops that add no Delivered-To at all.
func (rt *router) collectLoopMarkers(fs []field, envIdx map[int]bool) {
	budget := rt.max
	for i, f := range fs {
		if f.key != "Received" || !isPopfetchReceived(f.value) {
			continue
		}
		rt.hops++
		if i+1 >= len(fs) || budget <= 0 {
			continue
		}
		next := fs[i+1]
		if next.key != "Delivered-To" || envIdx[i+1] {
			continue
		}
		splitList(next.value, func(p string, bad bool) bool {
			budget--
			if a, ok := parseMailbox(p); ok && !bad && !a.empty {
				rt.loopSet[strings.ToLower(a.String())] = true
			}
			return budget > 0
		})
	}
}

// isPopfetchReceived reports whether a Received value is popfetch's own
// trace field (see Received in header.go): "with POP3 (popfetch" with any
// white space, including a fold, between the words. Linear in len(v).
func isPopfetchReceived(v string) bool {
	for rest := v; ; {
		i := strings.Index(rest, "(popfetch")
		if i < 0 {
			return false
		}
		if w, ok := cutLastWord(rest[:i], "POP3"); ok {
			if _, ok := cutLastWord(w, "with"); ok {
				return true
			}
		}
		rest = rest[i+1:]
	}
}

// cutLastWord removes trailing white space and then word from s; ok is
// false unless s ends in word as a whole word.
func cutLastWord(s, word string) (string, bool) {
	s = strings.TrimRight(s, " \t\r\n")
	p, ok := strings.CutSuffix(s, word)
	if !ok || p != "" && strings.IndexByte(" \t\r\n", p[len(p)-1]) < 0 {
		return "", false
	}
	return p, true
}

// list routes every address of one header value.
func (rt *router) list(v, hdr string, env bool) {
	splitList(v, func(p string, bad bool) bool {
		if rt.examined >= rt.max {
			rt.capped = true
			return false
		}
		rt.examined++
		a, ok := parseMailbox(p)
		if bad || !ok {
			if trimWSP(p) == "" {
				rt.bad = append(rt.bad, hdr+": unterminated comment or quote")
			} else {
				rt.bad = append(rt.bad, hdr+": "+strconv.Quote(snippet(p)))
			}
			return true
		}
		if a.empty {
			return true
		}
		rt.add(a, hdr, env)
		return true
	})
}

// add routes one parsed address.
func (rt *router) add(a addr, hdr string, env bool) {
	if env && rt.ignore[rt.addrKey(a)] {
		// Named on every message (the catch-all mailbox itself):
		// neither a recipient nor a reason to skip To/Cc.
		if !contains(rt.ignored, a.String()) { // at most len(EnvelopeIgnore) entries
			rt.ignored = append(rt.ignored, a.String())
		}
		return
	}
	local, domain := a.local, a.domain
	rcptDomain := domain
	switch {
	case env && rt.r.QVirtual != "" && !a.quoted && hasPrefixFold(local, rt.r.QVirtual, rt.r.CaseSensitive):
		// qmail virtual domains (fetchmail --qvirtual): the provider
		// delivers example.com's mail to the catch-all as
		// "example-com-joe@isp"; the prefix, not the domain, says it is
		// ours. Only envelope addresses carry it.
		local = local[len(rt.r.QVirtual):]
		rcptDomain = rt.firstLocalDomain()
		if local == "" {
			rt.local = true
			rt.addUnknown(a.String())
			return
		}
	case !rt.isLocal(domain):
		u, ok := rt.r.Directory.learnedAddress(local, domain)
		dom := rt.firstLocalDomain()
		if !ok || dom == "" {
			return // never relay off-host
		}
		// Taught by the administrator: delivered to a local user, at
		// a local domain (the RCPT of an SMTP/LMTP target is
		// user@Domain, which must never name the foreign domain).
		rt.local = true
		if rt.addUsers([]string{u}, a.String(), dom, hdr) {
			rt.learned = true
		}
		return
	}
	rt.local = true
	users, learned := rt.lookup(local, rcptDomain, a.quoted)
	if len(users) == 0 {
		rt.addUnknown(a.String())
		return
	}
	if rt.addUsers(users, a.String(), rcptDomain, hdr) && learned {
		rt.learned = true
	}
}

// addUsers adds the users one address reached; added reports whether
// any of them was new.
func (rt *router) addUsers(users []string, address, rcptDomain, hdr string) (added bool) {
	for _, u := range users {
		if rt.users[u] {
			continue
		}
		added = true
		rt.users[u] = true
		if len(rt.route.Rcpts) >= MaxRoutedUsers {
			rt.overCap = append(rt.overCap, u)
			continue
		}
		rt.route.Rcpts = append(rt.route.Rcpts, Recipient{User: u, Address: address, Domain: rcptDomain})
	}
	if !rt.viaSeen[hdr] {
		rt.viaSeen[hdr] = true
		rt.viaHdrs = append(rt.viaHdrs, hdr)
	}
	return added
}

// addrKey is the comparison form of an address for EnvelopeIgnore: the
// local part folded like the Directory folds it, the normalised domain.
func (rt *router) addrKey(a addr) string {
	local := a.local
	if !rt.r.CaseSensitive && !foldsToASCII(local) {
		local = strings.ToLower(local)
	}
	return local + "@" + a.domain
}

// lookup maps a local part to users: the full local part first (an explicit
// "joe+lists" mapping wins), then the part before the detail delimiter
// (RFC 5233 sub-addressing). A quoted local part is matched literally and
// never split: it only reaches a user through an explicit mapping.
// learned reports that a learned route answered.
func (rt *router) lookup(local, domain string, quoted bool) (users []string, learned bool) {
	// Not lower-cased when that would turn a non-ASCII rune into ASCII
	// (KELVIN SIGN into k): Directory.fold keeps such a local part apart.
	if !rt.r.CaseSensitive && !foldsToASCII(local) {
		local = strings.ToLower(local)
	}
	d := rt.r.Directory
	if us, learned := d.lookupAll(local, domain); len(us) > 0 {
		return us, learned
	}
	del := rt.r.DetailDelimiter
	if quoted || del == "" {
		return nil, false
	}
	base, _, ok := strings.Cut(local, del)
	if !ok || base == "" {
		return nil, false // "+tag@": empty base never matches
	}
	return d.lookupAll(base, domain)
}

func (rt *router) addUnknown(a string) {
	k := strings.ToLower(a)
	if rt.unknown[k] {
		return
	}
	rt.unknown[k] = true
	rt.route.Unknown = append(rt.route.Unknown, a)
}

// applyLoops drops recipients whose address already appears in a lower
// Delivered-To (the Postfix local(8) rule: "mail forwarding loop").
func (rt *router) applyLoops() {
	if len(rt.loopSet) == 0 {
		return
	}
	kept := rt.route.Rcpts[:0]
	for _, rc := range rt.route.Rcpts {
		if rt.loopSet[strings.ToLower(rc.Address)] {
			if !contains(rt.loops, rc.Address) {
				rt.loops = append(rt.loops, rc.Address)
			}
			continue
		}
		kept = append(kept, rc)
	}
	rt.route.Rcpts = kept
}

// finish sets Via and composes Reason.
func (rt *router) finish(truncated bool) {
	r := &rt.route
	if len(rt.viaHdrs) > 0 {
		if rt.fallback {
			r.Via = "header " + strings.Join(rt.viaHdrs, "/")
		} else {
			r.Via = "envelope " + strings.Join(rt.viaHdrs, "/")
		}
	} else if rt.fallback {
		r.Via = "header " + strings.Join(rt.fbNames, "/")
	}
	if rt.byListID {
		r.Via = "learned List-Id"
	} else if rt.learned && len(r.Rcpts) > 0 {
		r.Via += " (learned)"
	}
	if len(r.Rcpts) == 0 {
		r.Rcpts = nil
	}
	var parts []string
	if len(rt.loops) > 0 {
		parts = append(parts, "mail loop: already delivered to "+listSome(rt.loops))
		r.Loop = len(r.Rcpts) == 0
	}
	if len(r.Unknown) > 0 {
		parts = append(parts, "unknown user "+listSome(r.Unknown))
	}
	if len(rt.bad) > 0 {
		parts = append(parts, "unparseable "+listSome(rt.bad))
	}
	if len(r.Rcpts) == 0 && len(parts) == 0 {
		msg := "no local recipient found"
		if len(rt.details) > 0 {
			msg += " (" + strings.Join(rt.details, "; ") + ")"
		}
		parts = append(parts, msg)
	}
	// Limits are notes, not reasons of their own: they explain why the
	// route may be incomplete (partial results plus a note, and the
	// postmaster gets a copy: never a silent drop).
	if len(rt.overCap) > 0 {
		parts = append(parts, fmt.Sprintf("more than %d users: not routed to %s", MaxRoutedUsers, listSome(rt.overCap)))
	}
	if rt.capped {
		parts = append(parts, fmt.Sprintf("recipient cap reached after %d addresses", rt.examined))
	}
	if truncated {
		parts = append(parts, "header truncated at 1 MiB")
	}
	if rt.hops >= MaxPopfetchHops {
		// Whatever the routing found, a message that keeps coming back
		// through popfetch is quarantined; the other findings stay in
		// the reason for whoever untangles the loop.
		r.Rcpts = nil
		r.Loop = true
		parts = append([]string{fmt.Sprintf("mail loop: already fetched by popfetch %d times", rt.hops)}, parts...)
	}
	r.Reason = strings.Join(parts, "; ")
}

func listSome(l []string) string {
	if len(l) <= maxListed {
		return strings.Join(l, ", ")
	}
	return fmt.Sprintf("%s (and %d more)", strings.Join(l[:maxListed], ", "), len(l)-maxListed)
}

// snippet makes a bad address fit for Reason: valid UTF-8, no control
// characters, at most maxSnippet bytes.
func snippet(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxSnippet {
		s = s[:maxSnippet] + "..."
	}
	return SafeValue(strings.ToValidUTF8(s, "?"), maxSnippet+3)
}

func hasPrefixFold(s, prefix string, caseSensitive bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if caseSensitive {
		return s[:len(prefix)] == prefix
	}
	return strings.EqualFold(s[:len(prefix)], prefix)
}

// isLocal reports whether the normalised domain is one of LocalDomains. A
// "*.example.com" entry matches every subdomain of example.com but not
// example.com itself, as the rc file's validation and popfetch.hcl(5)
// say: whoever wants both lists both. Domain literals ("[192.0.2.1]") and
// "localhost" match only when listed.
func (rt *router) isLocal(domain string) bool {
	for _, ld := range rt.domains {
		if rest, ok := strings.CutPrefix(ld, "*."); ok {
			if strings.HasSuffix(domain, "."+rest) {
				return true
			}
			continue
		}
		if domain == ld {
			return true
		}
	}
	return false
}

// firstLocalDomain is the domain of a qvirtual recipient: the first
// LocalDomains entry that is not a wildcard.
func (rt *router) firstLocalDomain() string {
	for _, ld := range rt.domains {
		if !strings.HasPrefix(ld, "*.") {
			return ld
		}
	}
	if len(rt.domains) > 0 {
		return strings.TrimPrefix(rt.domains[0], "*.")
	}
	return ""
}

// receivedBy returns the host of the "by" clause of a Received value
// (RFC 5321 §4.4), lower-cased without a trailing dot; ok is false when
// there is none or more than one.
func receivedBy(v string) (string, bool) {
	toks := receivedTokens(v)
	host, n := "", 0
	for i := 0; i+1 < len(toks); i++ {
		if strings.EqualFold(toks[i], "by") {
			n++
			host = toks[i+1]
		}
	}
	if n != 1 {
		return "", false
	}
	return strings.TrimSuffix(strings.ToLower(host), "."), true
}

// receivedFor returns the single address of the "for" clause of a
// Received value. RFC 5321 §4.4 allows one Path there; a missing clause,
// two clauses, two addresses, or a clause inside a comment gives no result
// (comments are removed before tokenising).
func receivedFor(v string) (string, bool) {
	toks := receivedTokens(v)
	at := -1
	for i, t := range toks {
		if strings.EqualFold(t, "for") {
			if at >= 0 {
				return "", false
			}
			at = i
		}
	}
	if at < 0 || at+1 >= len(toks) {
		return "", false
	}
	if at+2 < len(toks) {
		switch strings.ToLower(toks[at+2]) {
		case "from", "by", "via", "with", "id":
		default:
			return "", false // "for <a> <b>": several addresses
		}
	}
	a := toks[at+1]
	if strings.Contains(a, ",") {
		return "", false
	}
	return a, true
}

// receivedTokens splits the clauses of a Received value (before the ";"
// that starts the date) into words, with comments removed.
func receivedTokens(v string) []string {
	s := stripComments(v)
	if i := strings.LastIndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.Fields(s)
}
