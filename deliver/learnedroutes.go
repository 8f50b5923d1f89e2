package deliver

import (
	"sort"
	"strconv"
	"strings"
)

// Learned routes are mappings an administrator taught popfetch after
// resending a message from the postmaster (popfetch reroute --learn): a
// full address, possibly outside the local domains (a mailing list's
// address, an old address of a person), or a mailing list's List-Id
// identifier (RFC 2919), each to one local user. Package deliver/learned
// keeps them in a file; the Directory only answers from them.

// maxListID is the longest List-Id identifier (RFC 2919 §2: "MUST NOT
// exceed 255 octets").
const maxListID = 255

// SetLearned replaces the learned routes: addrs maps full addresses
// ("local@domain"; the domain is normalised, the local part folded like a
// configured address) to users, listIDs maps List-Id identifiers to users.
// A route is used only while its user is known (knownUser, checked at
// each lookup as for aliases), so the users may be added before or after
// it (a directory's users join after the rc file's); Ignored names the
// routes whose user is unknown at the time it is called. Routes skipped
// for good (an invalid key, two keys that fold to one with different
// users) are reported by Ignored too.
func (d *Directory) SetLearned(addrs, listIDs map[string]string) {
	d.learnedAddr = make(map[string]string, len(addrs))
	d.learnedList = make(map[string]string, len(listIDs))
	d.learnedIgnored = nil
	for _, k := range sortedKeys(addrs) {
		u := addrs[k]
		i := strings.LastIndexByte(k, '@')
		dom, ok := "", false
		if i > 0 && i <= maxLocalPart {
			dom, ok = NormalizeDomain(k[i+1:])
		}
		if !ok || !safeToken(k) {
			d.learnedIgnored = append(d.learnedIgnored, "learned route "+strconv.Quote(k)+": invalid address")
			continue
		}
		key := d.fold(k[:i]) + "@" + dom
		if prev, dup := d.learnedAddr[key]; dup {
			if prev != u {
				d.learnedIgnored = append(d.learnedIgnored, "learned route "+strconv.Quote(k)+" to "+u+": the address is already learned for "+prev)
			}
			continue
		}
		d.learnedAddr[key] = u
	}
	for _, k := range sortedKeys(listIDs) {
		u := listIDs[k]
		id, ok := validListID(k)
		if !ok {
			d.learnedIgnored = append(d.learnedIgnored, "learned route \"list-id:"+snippet(k)+"\": invalid List-Id")
			continue
		}
		if prev, dup := d.learnedList[id]; dup {
			if prev != u {
				d.learnedIgnored = append(d.learnedIgnored, "learned route \"list-id:"+id+"\" to "+u+": already learned for "+prev)
			}
			continue
		}
		d.learnedList[id] = u
	}
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// learnedUnknown lists the learned routes whose user is unknown now.
func (d *Directory) learnedUnknown() []string {
	var out []string
	for _, k := range sortedKeys(d.learnedAddr) {
		if u := d.learnedAddr[k]; !d.knownUser(u) {
			out = append(out, "learned route "+strconv.Quote(k)+": unknown user "+strconv.Quote(u))
		}
	}
	for _, k := range sortedKeys(d.learnedList) {
		if u := d.learnedList[k]; !d.knownUser(u) {
			out = append(out, "learned route \"list-id:"+k+"\": unknown user "+strconv.Quote(u))
		}
	}
	return out
}

// knownUser reports whether a learned route's user may receive mail now.
func (d *Directory) knownUser(u string) bool {
	return d.users[u] || d.systemUser(u)
}

// learnedAddress returns the user a learned route maps the full address
// localPart@domain (domain normalised) to, whatever the local domains.
func (d *Directory) learnedAddress(localPart, domain string) (string, bool) {
	if d == nil || len(d.learnedAddr) == 0 || localPart == "" || hasUnsafe(localPart) {
		return "", false
	}
	u, ok := d.learnedAddr[d.fold(localPart)+"@"+domain]
	if !ok || !d.knownUser(u) {
		return "", false
	}
	return u, true
}

// learnedListID returns the user a learned route maps the List-Id
// identifier id (lower-case) to.
func (d *Directory) learnedListID(id string) (string, bool) {
	if d == nil || id == "" {
		return "", false
	}
	u, ok := d.learnedList[id]
	if !ok || !d.knownUser(u) {
		return "", false
	}
	return u, true
}

// ListID returns the List-Id identifier of the header section of raw
// (RFC 2919 §3: `List-Id: [phrase] "<" list-id ">"`), lower-cased, without
// the angle brackets; "" if there is none or it is malformed. Only the
// topmost List-Id field counts: a list that resends a message from
// another list adds its own field above the other's (RFC 2919 §7), so
// the topmost names the list that sent the message here.
func ListID(raw []byte) string {
	h, _ := readHeader(raw)
	v, ok := h.first("List-Id")
	if !ok {
		return ""
	}
	id, _ := parseListID(v)
	return id
}

// parseListID parses a List-Id field value. Comments are removed first;
// the identifier is in the last "<...>" and nothing but white space may
// follow it (a phrase before it may hold anything, even quoted "<x>").
func parseListID(v string) (string, bool) {
	if len(v) > 4*maxListID {
		return "", false
	}
	s := strings.TrimSpace(stripComments(v))
	if !strings.HasSuffix(s, ">") {
		return "", false
	}
	i := strings.LastIndexByte(s, '<')
	if i < 0 {
		return "", false
	}
	return validListID(strings.TrimSpace(s[i+1 : len(s)-1]))
}

// ValidListID returns the comparison form of a List-Id identifier
// (lower-case) and whether it is valid: RFC 2919 §2's list-label "."
// list-id-namespace, that is a dot-atom-text of RFC 5322 §3.2.3 with at
// least one dot, at most 255 octets.
func ValidListID(id string) (string, bool) {
	return validListID(id)
}

func validListID(id string) (string, bool) {
	if id == "" || len(id) > maxListID || !strings.Contains(id, ".") {
		return "", false
	}
	for _, label := range strings.Split(id, ".") {
		if label == "" {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; c >= 0x80 || !isAtext(c) { // ASCII only: RFC 2919 has no internationalised List-Id
				return "", false
			}
		}
	}
	return strings.ToLower(id), true
}

// OwnField returns the value of the first field named key above
// popfetch's own topmost Received field (see isPopfetchReceived) in the
// header section of raw, and whether there is one: a field popfetch
// wrote (see FieldAddresses). A field below that Received, or in a
// message without one, came with the message and is not popfetch's.
func OwnField(raw []byte, key string) (string, bool) {
	h, _ := readHeader(raw)
	key = canonical(key)
	v, found := "", false
	for _, f := range h {
		if f.key == "Received" && isPopfetchReceived(f.value) {
			return v, found
		}
		if f.key == key && !found {
			v, found = f.value, true
		}
	}
	return "", false
}

// maxFieldAddresses bounds FieldAddresses.
const maxFieldAddresses = 1000

// FieldAddresses returns the addresses in the first field named key above
// popfetch's own topmost Received field (see isPopfetchReceived) in the
// header section of raw, in canonical form (the form routing compares and
// a learned route stores), without duplicates; nil if there is no such
// field or no popfetch Received. Unparseable pieces are skipped, and at
// most 1000 pieces are looked at. popfetch writes the fields of a copy it
// delivers (a postmaster copy's X-Popfetch-Unrouted) above its Received
// field, and a downstream server (an LMTP server's own Received) adds
// above that; everything below it came with the message, and may have
// been written by its sender.
func FieldAddresses(raw []byte, key string) []string {
	v, ok := OwnField(raw, key)
	if !ok {
		return nil
	}
	var out []string
	n := 0
	splitList(v, func(p string, bad bool) bool {
		n++
		if a, ok := parseMailbox(p); ok && !bad && !a.empty && !contains(out, a.String()) {
			out = append(out, a.String())
		}
		return n < maxFieldAddresses
	})
	return out
}
