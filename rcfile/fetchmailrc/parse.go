package fetchmailrc

import (
	"fmt"
	"strings"
)

// File is a parsed fetchmailrc.
type File struct {
	Set   []Option // the "set ..." statements, in order
	Polls []*Poll  // poll, skip and defaults entries, in order
}

// Poll is one "poll NAME", "skip NAME" or "defaults" entry.
type Poll struct {
	Line     int
	Name     string
	Skip     bool
	Defaults bool
	Opts     []Option // the options before the first user description
	Users    []*User
}

// User is one "user ..." description with its options.
type User struct {
	Line     int
	Remote   string    // the name on the server; "" = the user running fetchmail
	Locals   []Mapping // the local names ("is"/"to", or "user NAME here")
	Wildcard bool      // "*" ended the local names
	Opts     []Option
}

// Mapping is one local name, or "server-name = client-name".
type Mapping struct {
	Remote string // "" for a plain local name
	Local  string
}

// Option is one keyword with its arguments.
type Option struct {
	Key  string // the canonical keyword ("proto" for protocol, ...)
	No   bool   // written "no KEY"
	Args []string
	Line int
}

// argKind says what a keyword takes after it.
type argKind int

const (
	argNone argKind = iota
	argOne          // one string or number
	argList         // one or more strings or numbers
)

// keywords maps every option keyword fetchmail knows to its canonical
// spelling and arguments (fetchmail(1), KEYWORD/OPTION SUMMARY).
var keywords = map[string]struct {
	key string
	arg argKind
}{}

func init() {
	add := func(arg argKind, names ...string) {
		for _, n := range names {
			canon, _, _ := strings.Cut(n, "|")
			for _, alias := range strings.Split(n, "|") {
				keywords[alias] = struct {
					key string
					arg argKind
				}{canon, arg}
			}
		}
	}
	add(argNone, "keep", "flush", "limitflush", "fetchall", "rewrite", "stripcr", "forcecr",
		"pass8bits", "dropstatus", "dropdelivered", "mimedecode", "idle", "ssl", "sslcertck",
		"dns", "checkalias", "uidl", "tracepolls", "lmtp", "envelope")
	add(argOne, "via", "proto|protocol", "port", "service", "auth|authenticate", "timeout",
		"qvirtual", "principal", "esmtpname", "esmtppassword", "bad-header", "pass|password",
		"sslcert", "sslkey", "sslproto", "sslcertfile", "sslcertpath", "sslfingerprint",
		"sslcommonname", "smtpaddress", "smtpname", "mda", "bsmtp", "preconnect", "postconnect",
		"plugin", "plugout", "properties", "interface", "monitor", "interval", "limit", "warnings",
		"batchlimit", "fetchlimit", "fetchsizelimit", "fastuidl", "expunge")
	add(argList, "localdomains|local", "aka", "folder", "smtphost", "fetchdomains", "antispam")
}

// noise words are ignored anywhere (fetchmail(1), "Run Control Syntax").
var noise = map[string]bool{"and": true, "with": true, "has": true, "wants": true, "options": true}

// reserved are the grammar words that are neither options nor noise.
var reserved = map[string]bool{"poll": true, "skip": true, "server": true, "defaults": true,
	"set": true, "user": true, "username": true, "is": true, "to": true, "here": true,
	"there": true, "no": true}

// setWords are the "set" statements that take a value ("set daemon 300",
// "set logfile = FILE"); the others are flags ("set [no] syslog").
var setWords = map[string]bool{"daemon": true, "logfile": true, "idfile": true, "pidfile": true,
	"postmaster": true, "properties": true}

// isKeyword says whether the token is a grammar word. Quoted strings and
// numbers never are; keywords are case-insensitive.
func isKeyword(t token) bool {
	if t.kind != tWord {
		return false
	}
	w := strings.ToLower(t.text)
	_, opt := keywords[w]
	return opt || noise[w] || reserved[w]
}

type parser struct {
	toks []token
	pos  int
}

// afterSecret reports whether the token at i follows the value of a
// password option (pass, password, esmtppassword).
func (p *parser) afterSecret(i int) bool {
	if i < 2 || i >= len(p.toks) || p.toks[i-2].kind != tWord {
		return false
	}
	switch strings.ToLower(p.toks[i-2].text) {
	case "pass", "password", "esmtppassword":
		return true
	}
	return false
}

// Parse reads a fetchmailrc. Errors name the line.
func Parse(src []byte) (*File, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	f := &File{}
	for {
		t, ok := p.next()
		if !ok {
			return f, nil
		}
		switch w := strings.ToLower(t.text); {
		case t.kind == tWord && w == "set":
			o, err := p.set(t)
			if err != nil {
				return nil, err
			}
			f.Set = append(f.Set, o)
		case t.kind == tWord && (w == "poll" || w == "skip" || w == "server" || w == "defaults"):
			e := &Poll{Line: t.line, Skip: w == "skip", Defaults: w == "defaults"}
			if !e.Defaults {
				n, ok := p.next()
				if !ok || !isValue(n) {
					return nil, fmt.Errorf("line %d: %s needs a server name", t.line, w)
				}
				e.Name = n.text
			}
			if err := p.entry(e); err != nil {
				return nil, err
			}
			f.Polls = append(f.Polls, e)
		default:
			return nil, fmt.Errorf("line %d: expected poll, skip, defaults or set, not %q", t.line, t.text)
		}
	}
}

// next returns the next token that is not a noise word.
func (p *parser) next() (token, bool) {
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		p.pos++
		if t.kind == tWord && noise[strings.ToLower(t.text)] {
			continue
		}
		return t, true
	}
	return token{}, false
}

// peek is next without consuming.
func (p *parser) peek() (token, bool) {
	save := p.pos
	t, ok := p.next()
	p.pos = save
	return t, ok
}

// peekWord says whether the next token is the keyword w.
func (p *parser) peekWord(w string) bool {
	t, ok := p.peek()
	return ok && t.kind == tWord && strings.EqualFold(t.text, w)
}

func isValue(t token) bool {
	return t.kind == tString || t.kind == tNumber || t.kind == tWord && !isKeyword(t)
}

func (p *parser) set(at token) (Option, error) {
	o := Option{Line: at.line}
	t, ok := p.next()
	if ok && t.kind == tWord && strings.EqualFold(t.text, "no") {
		o.No = true
		t, ok = p.next()
	}
	if !ok || t.kind != tWord {
		return o, fmt.Errorf("line %d: set needs a name", at.line)
	}
	o.Key = strings.ToLower(t.text)
	if !setWords[o.Key] || o.No {
		return o, nil
	}
	if n, ok := p.peek(); ok && n.kind == tMap {
		p.next()
	}
	v, ok := p.next()
	if !ok || !isValue(v) {
		return o, fmt.Errorf("line %d: set %s needs a value", at.line, o.Key)
	}
	o.Args = []string{v.text}
	return o, nil
}

// entry reads the options and user descriptions of a poll, skip or
// defaults entry, up to the next entry or set statement. Options before
// the first user description are the entry's own; fetchmail wants only
// server options there, but an import is lenient and lets them apply to
// every user of the entry.
func (p *parser) entry(e *Poll) error {
	var u *User
	for {
		t, ok := p.peek()
		if !ok {
			return nil
		}
		w := strings.ToLower(t.text)
		if t.kind == tWord && (w == "poll" || w == "skip" || w == "server" || w == "defaults" || w == "set") {
			return nil
		}
		p.next()
		switch {
		case t.kind == tWord && (w == "user" || w == "username"):
			nu, err := p.user(t)
			if err != nil {
				return err
			}
			u = nu
			e.Users = append(e.Users, u)
		case t.kind == tWord && (w == "is" || w == "to"):
			if u == nil {
				u = &User{Line: t.line}
				e.Users = append(e.Users, u)
			}
			if err := p.locals(t, u); err != nil {
				return err
			}
		default:
			o, err := p.option(t)
			if err != nil {
				return err
			}
			if u != nil {
				u.Opts = append(u.Opts, o)
			} else {
				e.Opts = append(e.Opts, o)
			}
		}
	}
}

// user reads "user NAME [there]", "user NAME... here" or "user NAME".
func (p *parser) user(at token) (*User, error) {
	u := &User{Line: at.line}
	names, wild, err := p.mappings(at)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 && !wild {
		return nil, fmt.Errorf("line %d: %s needs a name", at.line, at.text)
	}
	switch {
	case p.peekWord("here"):
		p.next()
		u.Locals, u.Wildcard = names, wild
	case len(names) == 1 && names[0].Remote == "" && !wild:
		if p.peekWord("there") {
			p.next()
		}
		u.Remote = names[0].Local
	default:
		return nil, fmt.Errorf("line %d: %s takes one server user name, or local names followed by \"here\"", at.line, at.text)
	}
	return u, nil
}

// locals reads the names after "is" or "to": local names (or mappings),
// an optional "*", then "here"; or one name followed by "there", which
// is the server's user name.
func (p *parser) locals(at token, u *User) error {
	names, wild, err := p.mappings(at)
	if err != nil {
		return err
	}
	if len(names) == 0 && !wild {
		return fmt.Errorf("line %d: %s needs a name", at.line, at.text)
	}
	if len(names) == 1 && names[0].Remote == "" && !wild && p.peekWord("there") {
		p.next()
		u.Remote = names[0].Local
		return nil
	}
	if p.peekWord("here") {
		p.next()
	}
	u.Locals = append(u.Locals, names...)
	u.Wildcard = u.Wildcard || wild
	return nil
}

// mappings reads names, "a = b" pairs and a "*".
func (p *parser) mappings(at token) ([]Mapping, bool, error) {
	var out []Mapping
	wild := false
	for {
		t, ok := p.peek()
		if !ok || !isValue(t) {
			return out, wild, nil
		}
		p.next()
		if t.kind == tWord && t.text == "*" {
			wild = true
			continue
		}
		if n, ok := p.peek(); ok && n.kind == tMap {
			p.next()
			v, ok := p.next()
			if !ok || !isValue(v) {
				return nil, false, fmt.Errorf("line %d: %q = needs a local name", at.line, t.text)
			}
			out = append(out, Mapping{Remote: t.text, Local: v.text})
			continue
		}
		out = append(out, Mapping{Local: t.text})
	}
}

// option reads one option keyword (t, already consumed) and its arguments.
func (p *parser) option(t token) (Option, error) {
	o := Option{Line: t.line}
	w := strings.ToLower(t.text)
	if t.kind == tWord && w == "no" {
		n, ok := p.next()
		if !ok || n.kind != tWord {
			return o, fmt.Errorf("line %d: \"no\" needs a keyword after it", t.line)
		}
		o.No = true
		t, w = n, strings.ToLower(n.text)
	}
	kw, ok := keywords[w]
	if t.kind != tWord || !ok {
		if t.kind == tWord && !o.No && strings.HasPrefix(w, "no") {
			// fetchmail's lexer also takes "nokeep", "nodns", ...
			if k, ok2 := keywords[w[2:]]; ok2 && k.arg == argNone {
				o.No, kw, ok = true, k, true
			}
		}
		if !ok {
			if p.afterSecret(p.pos - 1) {
				// Most likely the rest of a password with a space:
				// quoting it would print part of the secret.
				return o, fmt.Errorf("line %d: unknown keyword after a password: a password with a space must be quoted", t.line)
			}
			return o, fmt.Errorf("line %d: unknown keyword %q", t.line, t.text)
		}
	}
	o.Key = kw.key
	if o.No {
		return o, nil
	}
	switch kw.arg {
	case argOne:
		v, ok := p.next()
		// "auth password": fetchmail's grammar takes the keyword there.
		authPassword := o.Key == "auth" && v.kind == tWord && strings.EqualFold(v.text, "password")
		if !ok || !isValue(v) && !authPassword {
			return o, fmt.Errorf("line %d: %s needs a value", t.line, t.text)
		}
		o.Args = []string{v.text}
	case argList:
		for {
			v, ok := p.peek()
			if !ok || !isValue(v) {
				break
			}
			p.next()
			o.Args = append(o.Args, v.text)
		}
		if len(o.Args) == 0 {
			return o, fmt.Errorf("line %d: %s needs a value", t.line, t.text)
		}
	case argNone:
		if o.Key == "envelope" {
			// envelope [COUNT] HEADER
			v, ok := p.next()
			if !ok || !isValue(v) {
				return o, fmt.Errorf("line %d: envelope needs a header name", t.line)
			}
			o.Args = []string{v.text}
			if v.kind == tNumber {
				h, ok := p.next()
				if !ok || !isValue(h) {
					return o, fmt.Errorf("line %d: envelope needs a header name after the count", t.line)
				}
				o.Args = append(o.Args, h.text)
			}
		}
	}
	return o, nil
}
