package rcfile

import (
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/popfetch/popfetch/deliver"
)

// Limits on credential strings. fetchmail 6.4.0 fixed a crash on a very
// long user name; RFC 2449 caps a POP3 command at 255 octets, so nothing
// longer could be sent anyway.
const (
	maxUsername = 255
	maxPassword = 255
)

// ShortIntervalWarning is the summary of the warning about an interval
// under a minute. It concerns the daemon's schedule only, so commands that
// poll once leave it out.
const ShortIntervalWarning = "Short poll interval"

// MinInterval is the shortest poll interval an rc file may set.
const MinInterval = 30 * time.Second

// defaultStateDir follows the XDG base directory spec for users and the
// FHS for root (a system daemon); euid says which.
func defaultStateDir(euid int) (string, error) {
	if euid == 0 {
		return "/var/lib/popfetch", nil
	}
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "popfetch"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find the home directory for the default state directory: %v", err)
	}
	return filepath.Join(home, ".local", "state", "popfetch"), nil
}

var accountNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._@+-]*$`)

var mailboxIDRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]*$`)

func (p *parser) account(ah *accountHCL, s *settingsHCL, topState string) *Account {
	a := &Account{Name: ah.Name, DeclRange: ah.DefRange, StateDir: topState}
	// The name ends up in state file names and log lines.
	if !accountNameRE.MatchString(a.Name) || len(a.Name) > 64 {
		p.errorf(ah.NameRange, "Invalid account name",
			"Account name %q may use letters, digits and . _ @ + - (not first), at most 64 characters.", a.Name)
	}

	if v, ok := p.required(s.Server, s.ServerRange, ah.DefRange, "server", `server = "pop.example.com"`); ok {
		a.Server = p.host(v, s.ServerRange)
	}
	a.TLS = TLSImplicit
	if s.TLS != nil {
		a.TLS = p.tlsMode(*s.TLS, s.TLSRange)
	}
	if a.TLS == TLSNone && a.Server != "" && !isLoopback(a.Server) {
		// Allowed because it is explicit: plaintext is never an implicit
		// downgrade (fetchmail's CVE-2006-5867 fell back to it when STLS
		// was missing), but worth saying out loud.
		p.warnf(s.TLSRange, "Password sent in clear text",
			`tls = "none" sends the password unencrypted to %s; use "implicit" or "starttls" unless this is a test server.`, a.Server)
	}
	a.Port = 110
	if a.TLS == TLSImplicit {
		a.Port = 995
	}
	if s.Port != nil {
		a.Port = *s.Port
		if a.Port < 1 || a.Port > 65535 {
			p.errorf(s.PortRange, "Invalid port", "port must be between 1 and 65535, not %d.", a.Port)
		}
	}
	if s.CAFile != nil {
		a.CAFile = p.optPath(*s.CAFile, s.CAFileRange)
	}
	if s.Fingerprint != nil {
		a.Fingerprint = p.fingerprint(*s.Fingerprint, s.FingerprintRange)
	}
	p.pinSettings(a, s)
	if v, ok := p.required(s.Username, s.UsernameRange, ah.DefRange, "username", `username = "joe"`); ok {
		p.credential(v, s.UsernameRange, "username", maxUsername)
		a.Username = v
	}
	a.OAuth2, a.OAuth2TokenCommand = p.oauth2Source(s)
	a.Password = p.password(s, ah.DefRange, s.OAuth2 != nil || s.OAuth2TokenCommand != nil || isSet(s.OAuth2TokenCommandRange))
	a.Auth = AuthAuto
	if s.Auth != nil {
		a.Auth = p.authMethod(*s.Auth, s.AuthRange)
		p.authCredential(a, s.AuthRange)
	}

	if s.Keep != nil {
		a.Keep = *s.Keep
	}
	if s.FetchAll != nil {
		a.FetchAll = *s.FetchAll
	}
	if s.LogMessages != nil {
		a.QuietMessages = !*s.LogMessages
	}
	if a.FetchAll && a.Keep {
		// Without keep the first run deletes what it fetched, so the
		// next has nothing to fetch again; with keep every run finds
		// the whole mailbox again. (A server that refuses DELE does the
		// same, but that is not known here.)
		p.warnf(s.FetchAllRange, "fetch_all with keep fetches everything again",
			"Account %q keeps its mail on the server and fetches mail it already delivered: every \"popfetch fetch\" run delivers the whole mailbox again, "+
				"and so does the daemon's first poll after it starts or this account changes (later polls take only new mail). "+
				"Use fetch_all for one run, then remove it.", a.Name)
	}
	if s.DeleteAfter != nil {
		a.DeleteAfter = p.deleteAfter(*s.DeleteAfter, s.DeleteAfterRange)
		if !a.Keep && a.DeleteAfter > 0 {
			p.errorf(s.DeleteAfterRange, "delete_after without keep",
				"Account %q deletes every message as soon as it is delivered (keep is false), so delete_after has nothing to do. Set keep = true to leave mail on the server for %s, or remove delete_after.", a.Name, fmtDays(a.DeleteAfter))
		}
	}
	if isSet(s.LimitRange) {
		a.Limit = p.limit(s.Limit, s.LimitRange)
	}
	if s.FetchLimit != nil {
		a.FetchLimit = *s.FetchLimit
		if a.FetchLimit < 0 {
			p.errorf(s.FetchLimitRange, "Invalid fetch_limit",
				"fetch_limit must be 0 (no limit) or more, not %d.", a.FetchLimit)
		}
	}
	a.Timeout = p.duration(s.Timeout, s.TimeoutRange, "timeout", 60*time.Second, time.Second, time.Hour)
	// 30s is the floor: below it a poll hardly ends before the next is
	// due, and providers lock out clients that log in that often.
	a.Interval = p.duration(s.Interval, s.IntervalRange, "interval", 5*time.Minute, MinInterval, 24*time.Hour)
	if s.Interval != nil && a.Interval >= MinInterval && a.Interval < time.Minute {
		// Allowed, but many providers throttle or block clients that log
		// in more often than once a minute.
		p.warnf(s.IntervalRange, ShortIntervalWarning,
			"interval %s polls more than once a minute; many providers throttle or block that. Consider 1m or more.", fmtDuration(a.Interval))
	}
	if s.StateDir != nil {
		a.StateDir, _ = p.path(*s.StateDir, s.StateDirRange)
	}
	if s.MailboxID != nil {
		a.MailboxID = *s.MailboxID
		// No '@': an id never equals the USERNAME@SERVER of an account
		// without one. It names a journal file too.
		if !mailboxIDRE.MatchString(a.MailboxID) || len(a.MailboxID) > 64 {
			p.errorf(s.MailboxIDRange, "Invalid mailbox_id",
				"mailbox_id %q may use letters, digits and . _ + - (not first), at most 64 characters.", a.MailboxID)
		}
	}

	if s.Multidrop != nil {
		a.Multidrop = p.multidrop(s.Multidrop)
	}
	if s.Deliver == nil {
		p.errorf(ah.DefRange, "Missing deliver block",
			"Account %q has no deliver block (and the defaults block has none to inherit); add e.g. deliver { maildir = \"~/Maildir\" }.", a.Name)
	} else if d := p.dest(s.Deliver, "deliver", a.Multidrop != nil); d != nil {
		a.Deliver = *d
	}
	if s.Postmaster != nil {
		a.Postmaster = p.dest(s.Postmaster, "postmaster", false)
	}
	if a.Multidrop != nil && s.Deliver != nil {
		p.sharedBox(a, s)
	}
	a.Rules = p.rules(s.Rules, fmt.Sprintf("account %q", a.Name), a.Multidrop != nil)
	p.ruleTargets(a)
	a.Filters = p.filters(s.Filters, a)
	a.TrustedReceived = p.trustedReceived(s.TrustedReceived)
	return a
}

// required returns *v, reporting a missing attribute at the block that
// lacks it. An attribute that is present but failed to decode was already
// reported by gohcl, so it is not reported again.
func (p *parser) required(v *string, rng, block hcl.Range, name, example string) (string, bool) {
	if v != nil {
		return *v, true
	}
	switch {
	case !isSet(rng):
		p.errorf(block, "Missing "+name,
			"The %s attribute is required here or in the defaults block, e.g. %s.", name, example)
	case !p.reported(rng):
		p.errorf(rng, "Missing "+name, "%s must not be null.", name)
	}
	return "", false
}

// credential rejects what would let a config value inject protocol lines:
// CR, LF and NUL (a CR or LF ends the USER or PASS command early and
// starts one the user never wrote), and overlong values.
func (p *parser) credential(v string, rng hcl.Range, name string, max int) {
	if i := strings.IndexAny(v, "\r\n\x00"); i >= 0 {
		p.errorf(rng, "Invalid "+name,
			"%s contains a %s character, which would corrupt the POP3 command it is sent in; remove it.", name, ctlName(v[i]))
	}
	if v == "" {
		p.errorf(rng, "Invalid "+name, "%s must not be empty.", name)
	}
	if len(v) > max {
		p.errorf(rng, "Invalid "+name, "%s is %d bytes long; at most %d are allowed.", name, len(v), max)
	}
}

func ctlName(c byte) string {
	switch c {
	case '\r':
		return "carriage return (CR)"
	case '\n':
		return "line feed (LF)"
	default:
		return "NUL"
	}
}

// host checks a POP3 server name: a host name or IP address, without the
// scheme or port people paste from URLs. Non-ASCII names become A-labels.
func (p *parser) host(v string, rng hcl.Range) string {
	switch {
	case strings.ContainsAny(v, "\r\n\x00"):
		p.errorf(rng, "Invalid server", "server contains a control character.")
		return v
	case strings.Contains(v, "://"):
		p.errorf(rng, "Invalid server",
			"server is a host name, not a URL; write server = %q and set tls and port separately.", v[strings.Index(v, "://")+3:])
		return v
	case net.ParseIP(v) != nil:
		return v
	case strings.Contains(v, ":"):
		h, port, _ := strings.Cut(v, ":")
		p.errorf(rng, "Invalid server",
			"server is a host name without a port; write server = %q and port = %s.", h, port)
		return v
	}
	h, ok := deliver.NormalizeDomain(v)
	if !ok || len(h) > 253 || strings.ContainsAny(h, " /\\@[") {
		p.errorf(rng, "Invalid server", "%q is not a valid host name.", v)
		return v
	}
	return h
}

func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

func (p *parser) authMethod(v string, rng hcl.Range) AuthMethod {
	m := AuthMethod(strings.ToLower(v))
	if slices.Contains(AuthMethods, m) {
		if m == AuthAPOP {
			p.warnf(rng, "APOP uses MD5",
				`auth = "apop" answers the server's challenge with MD5, which is broken (RFC 6151); prefer "auto" (SCRAM when the server offers it) over TLS.`)
		}
		return m
	}
	names := make([]string, len(AuthMethods))
	for i, a := range AuthMethods {
		names[i] = strconv.Quote(string(a))
	}
	p.errorf(rng, "Invalid auth method", "auth must be one of %s, not %q.", strings.Join(names, ", "), v)
	return AuthAuto
}

// authCredential checks that the mechanism auth names has the credential
// it sends: XOAUTH2 and OAUTHBEARER an OAuth2 token source, the others a
// password. Without it the account could never log in; every poll would
// fail on a setting the file can already show to be wrong.
func (p *parser) authCredential(a *Account, rng hcl.Range) {
	oauth := a.OAuth2 != nil || a.OAuth2TokenCommand != nil
	pw := a.Password
	password := pw.Inline != "" || pw.File != "" || pw.Env != "" || pw.Command != nil
	switch a.Auth {
	case AuthAuto:
	case AuthXOAUTH2, AuthOAUTHBEARER:
		if !oauth {
			p.errorf(rng, "auth needs an OAuth2 token",
				"Account %q has auth = %q, which signs in with an OAuth2 access token; add an oauth2 block or oauth2_token_command (here or in defaults), or choose a password mechanism.", a.Name, a.Auth)
		}
	default:
		if oauth && !password {
			p.errorf(rng, "auth needs a password",
				"Account %q has auth = %q, which signs in with a password, but only an OAuth2 token source; set one of password_file, password_env, password_command or password, or use auth = \"auto\", \"xoauth2\" or \"oauthbearer\".", a.Name, a.Auth)
		}
	}
}

func (p *parser) tlsMode(v string, rng hcl.Range) TLSMode {
	switch m := TLSMode(strings.ToLower(v)); m {
	case TLSImplicit, TLSStartTLS, TLSNone:
		return m
	}
	p.errorf(rng, "Invalid tls mode",
		`tls must be "implicit" (POP3S, port 995), "starttls" (STLS on port 110) or "none" (plaintext), not %q.`, v)
	return TLSImplicit
}

// fingerprint accepts "sha256:HEX", plain HEX or colon-separated HEX, as
// printed by the various openssl and browser dialogs.
func (p *parser) fingerprint(v string, rng hcl.Range) string {
	s := strings.TrimSpace(v)
	if s == "" {
		return "" // no pin, as when absent; Format prints it this way
	}
	if len(s) > 7 && strings.EqualFold(s[:7], "sha256:") {
		s = s[7:]
	}
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		p.errorf(rng, "Invalid tls_fingerprint",
			`tls_fingerprint must be the SHA-256 of the server's public key (SPKI): 64 hex digits, optionally with a "sha256:" prefix or colons; %q is not.`, v)
		return ""
	}
	return s
}

// pinSettings checks what goes with a pin: a pin replaces the chain check,
// so a ca_file next to it would never be read, and without a pin the name
// is always checked, so tls_check_name = false would not do what it says.
// (An account that sets either of ca_file and tls_fingerprint inherits
// neither from defaults: see inherit.)
func (p *parser) pinSettings(a *Account, s *settingsHCL) {
	if a.Fingerprint != "" && a.CAFile != "" {
		p.errorf(s.CAFileRange, "ca_file with tls_fingerprint",
			"Account %q sets both ca_file and tls_fingerprint (at %s); the pin replaces the certificate chain check, so ca_file would never be read. Remove one of them.",
			a.Name, s.FingerprintRange.String())
	}
	if s.CheckName == nil {
		return
	}
	if a.Fingerprint != "" {
		a.CheckName = *s.CheckName
	} else if !*s.CheckName {
		p.errorf(s.CheckNameRange, "tls_check_name without tls_fingerprint",
			"Account %q has tls_check_name = false but no tls_fingerprint: without a pin the certificate is always checked against the system roots (or ca_file) and the server name. Pin the server's key with tls_fingerprint, or remove tls_check_name.", a.Name)
	}
}

// password checks that exactly one source is given (at most one if the
// account has an OAuth2 token source); it names both places when there
// are two, because with defaults the second may be far away.
func (p *parser) password(s *settingsHCL, block hcl.Range, optional bool) Password {
	return p.passwordSource(passwordAttrs{
		s.Password, s.PasswordRange, s.PasswordFile, s.PasswordFileRange,
		s.PasswordEnv, s.PasswordEnvRange, s.PasswordCommand, s.PasswordCommandRange,
	}, block, optional,
		"Set exactly one of password_file, password_env, password_command or password (here or in defaults).")
}

// passwordAttrs are the four password attributes of a block: an
// account's, or an ldap block's bind password (ldap.go).
type passwordAttrs struct {
	Inline       *string
	InlineRange  hcl.Range
	File         *string
	FileRange    hcl.Range
	Env          *string
	EnvRange     hcl.Range
	Command      *[]string
	CommandRange hcl.Range
}

// set says whether any of the four attributes is written.
func (a passwordAttrs) set() bool {
	return isSet(a.InlineRange) || isSet(a.FileRange) || isSet(a.EnvRange) || isSet(a.CommandRange)
}

// passwordSource checks one block's password attributes, with the same
// rules wherever they are: exactly one source (at most one if optional),
// missing reported at block with the detail missing.
func (p *parser) passwordSource(s passwordAttrs, block hcl.Range, optional bool, missing string) Password {
	type src struct {
		name string
		rng  hcl.Range
	}
	var set []src
	var pw Password
	if s.Inline != nil {
		set = append(set, src{"password", s.InlineRange})
		pw.Inline, pw.Range = *s.Inline, s.InlineRange
		p.credential(pw.Inline, s.InlineRange, "password", maxPassword)
	}
	if s.File != nil {
		set = append(set, src{"password_file", s.FileRange})
		pw.File, _ = p.path(*s.File, s.FileRange)
		pw.Range = s.FileRange
	}
	if s.Env != nil {
		set = append(set, src{"password_env", s.EnvRange})
		pw.Env, pw.Range = *s.Env, s.EnvRange
		if !envNameRE.MatchString(pw.Env) {
			p.errorf(s.EnvRange, "Invalid password_env",
				"password_env is the name of an environment variable (letters, digits, _); this value is not one (it is not repeated here in case it is the password itself).")
		}
	}
	if s.Command != nil {
		set = append(set, src{"password_command", s.CommandRange})
		pw.Command, pw.Range = *s.Command, s.CommandRange
		p.command(pw.Command, s.CommandRange)
	}
	// A source that is present but failed to decode was reported already;
	// "no password source" on top of it would be wrong.
	for _, r := range []hcl.Range{s.InlineRange, s.FileRange, s.EnvRange, s.CommandRange} {
		if isSet(r) && p.reported(r) {
			return pw
		}
	}
	switch len(set) {
	case 0:
		if optional {
			break
		}
		p.errorf(block, "No password source", "%s", missing)
	case 1:
	default:
		p.errorf(set[1].rng, "Two password sources",
			"Both %s (at %s) and %s (at %s) are set; keep exactly one.", set[0].name, set[0].rng, set[1].name, set[1].rng)
	}
	return pw
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (p *parser) command(argv []string, rng hcl.Range) {
	p.commandAttr(argv, rng, "password_command", `["pass", "show", "mail/work"]`)
}

// commandAttr checks the argv of a command attribute (password_command,
// oauth2_token_command).
func (p *parser) commandAttr(argv []string, rng hcl.Range, attr, example string) {
	if len(argv) == 0 || argv[0] == "" {
		p.errorf(rng, "Invalid "+attr,
			`%s is a program and its arguments, e.g. %s.`, attr, example)
		return
	}
	// A relative path with a slash would depend on the daemon's working
	// directory; bare names go through $PATH like a shell would.
	if strings.Contains(argv[0], "/") && !filepath.IsAbs(argv[0]) {
		p.errorf(rng, "Invalid "+attr,
			"The program %q must be an absolute path or a bare name found in $PATH.", argv[0])
	}
	for _, s := range argv {
		if strings.IndexByte(s, 0) >= 0 {
			p.errorf(rng, "Invalid "+attr, "An argument contains a NUL byte.")
		}
	}
}

// duration parses a Go duration string, applying def when absent.
func (p *parser) duration(v *string, rng hcl.Range, name string, def, min, max time.Duration) time.Duration {
	if v == nil {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(*v))
	if err != nil {
		p.errorf(rng, "Invalid duration",
			`%s = %q is not a duration; write a number with a unit (s, m, h), such as "5m", "90s" or "1h30m".`, name, *v)
		return def
	}
	if d < min || d > max {
		p.errorf(rng, "Invalid "+name, "%s must be between %s and %s, not %s.", name, fmtDuration(min), fmtDuration(max), *v)
		return def
	}
	return d
}

// Bounds of delete_after: below an hour it is hardly "leaving mail on
// the server"; ten years is far beyond any retention anyone asks for.
const (
	minDeleteAfter = time.Hour
	maxDeleteAfter = 3650 * 24 * time.Hour
)

// deleteAfter parses delete_after: a duration that may count whole days
// (see parseDays), within minDeleteAfter and maxDeleteAfter.
func (p *parser) deleteAfter(v string, rng hcl.Range) time.Duration {
	d, err := parseDays(v)
	if err != nil {
		p.errorf(rng, "Invalid duration",
			`delete_after = %q is not a duration; write a number with a unit (d, h, m), such as "7d", "36h" or "1d12h".`, v)
		return 0
	}
	if d < minDeleteAfter || d > maxDeleteAfter {
		p.errorf(rng, "Invalid delete_after", "delete_after must be between %s and %s, not %s.", fmtDays(minDeleteAfter), fmtDays(maxDeleteAfter), v)
		return 0
	}
	return d
}

// parseDays parses a Go duration (time.ParseDuration) that may begin
// with a whole number of days, "7d" or "1d12h": time.ParseDuration has no
// unit longer than an hour, and retention is counted in days.
func parseDays(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	days, rest := int64(0), v
	if i := strings.IndexByte(v, 'd'); i >= 0 {
		num := v[:i]
		if num == "" || len(num) > 6 || strings.Trim(num, "0123456789") != "" {
			return 0, fmt.Errorf("bad number of days in %q", v)
		}
		days, _ = strconv.ParseInt(num, 10, 64)
		if days > maxDays {
			// A time.Duration holds about 292 years; more would wrap
			// around to a negative duration.
			return 0, fmt.Errorf("too many days in %q (at most %d)", v, maxDays)
		}
		rest = v[i+1:]
		if rest == "" {
			return time.Duration(days) * 24 * time.Hour, nil
		}
		if rest[0] == '-' || rest[0] == '+' {
			return 0, fmt.Errorf("bad duration %q", v)
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", v)
	}
	if d > time.Duration(math.MaxInt64)-time.Duration(days)*24*time.Hour {
		return 0, fmt.Errorf("duration %q too long", v)
	}
	return time.Duration(days)*24*time.Hour + d, nil
}

// maxDays is the most whole days a time.Duration holds.
const maxDays = int64(math.MaxInt64 / int64(24*time.Hour))

// fmtDays prints a duration of whole days as "7d", the way delete_after
// is usually written, and any other as fmtDuration does.
func fmtDays(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	if d > day {
		return strconv.FormatInt(int64(d/day), 10) + "d" + fmtDuration(d%day)
	}
	return fmtDuration(d)
}

// limit is a byte count: a whole number, or a string with a unit. K, M, G
// and KiB, MiB, GiB are powers of 1024 (as in du and dd); KB, MB, GB are
// powers of 1000.
func (p *parser) limit(expr hcl.Expression, rng hcl.Range) int64 {
	return p.size(expr, rng, "limit")
}

// size is a byte count like limit, for the attribute name.
func (p *parser) size(expr hcl.Expression, rng hcl.Range, name string) int64 {
	v, ds := expr.Value(p.ctx)
	p.diags = append(p.diags, ds...)
	if ds.HasErrors() || v.IsNull() || !v.IsKnown() {
		return 0
	}
	bad := func() int64 {
		p.errorf(rng, "Invalid "+name,
			`%s is a size in bytes: a whole number, or a string such as "10MB", "512KiB" or "1G" (0 = no limit).`, name)
		return 0
	}
	switch v.Type() {
	case cty.Number:
		var n int64
		if err := gocty.FromCtyValue(v, &n); err != nil || n < 0 {
			return bad()
		}
		return n
	case cty.String:
		n, ok := parseSize(v.AsString())
		if !ok {
			return bad()
		}
		return n
	}
	return bad()
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
}

func parseSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
	if err != nil || !ok || n > math.MaxInt64/mult {
		return 0, false
	}
	return n * mult, true
}

// path expands ~ and $VAR / ${VAR} and makes a relative result absolute
// against the rc file's directory, so the meaning of the file does not
// depend on the daemon's working directory. (In HCL source ${ starts an
// interpolation: write $${VAR}, $VAR, or "${env("VAR")}".)
func (p *parser) path(v string, rng hcl.Range) (string, bool) {
	if strings.IndexByte(v, 0) >= 0 || v == "" {
		p.errorf(rng, "Invalid path", "A path must not be empty or contain NUL.")
		return v, false
	}
	s := v
	if s == "~" || strings.HasPrefix(s, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			p.errorf(rng, "Invalid path", "Cannot expand ~ in %q: %v.", v, err)
			return v, false
		}
		s = home + s[1:]
	} else if strings.HasPrefix(s, "~") {
		p.errorf(rng, "Invalid path", "~user is not supported in %q; write the full path.", v)
		return v, false
	}
	var missing []string
	s = os.Expand(s, func(name string) string {
		val, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return val
	})
	if len(missing) > 0 {
		p.errorf(rng, "Invalid path", "Environment variable %s in %q is not set.", missing[0], v)
		return v, false
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.dir, s)
	}
	return filepath.Clean(s), true
}

// optPath is path for optional files, where "" means "none" (and is
// what Format prints for an unset one).
func (p *parser) optPath(v string, rng hcl.Range) string {
	if v == "" {
		return ""
	}
	s, _ := p.path(v, rng)
	return s
}

// dest builds a deliver, postmaster or user deliver block. perUser says
// whether maildir may contain {user} and {domain}: only where there is a
// user to substitute, i.e. in multidrop deliver and user blocks.
func (p *parser) dest(d *destHCL, what string, perUser bool) *Destination {
	type target struct {
		name string
		rng  hcl.Range
	}
	var set []target
	if d.Maildir != nil {
		set = append(set, target{"maildir", d.MaildirRange})
	}
	if d.MDA != nil {
		set = append(set, target{"mda", d.MDARange})
	}
	if d.SMTP != nil {
		set = append(set, target{"smtp", d.SMTP.DefRange})
	}
	switch len(set) {
	case 0:
		if isSet(d.MaildirRange) || isSet(d.MDARange) {
			return nil // written, but with the wrong type: that error is reported
		}
		p.errorf(d.DefRange, "No delivery target",
			"A %s block needs exactly one of maildir = \"path\", mda = [\"/path\", ...] or an smtp { ... } block.", what)
		return nil
	case 1:
	default:
		p.errorf(set[1].rng, "Two delivery targets",
			"Both %s (at %s) and %s (at %s) are set in this %s block; keep exactly one.", set[0].name, set[0].rng, set[1].name, set[1].rng, what)
	}
	out := &Destination{MDATimeout: 5 * time.Minute, MDATempExitCodes: []int{75}}
	if d.Maildir != nil {
		out.Maildir, out.MaildirRange = *d.Maildir, d.MaildirRange
		// The placeholder syntax is deliver's, which expands the path:
		// other braces are literal directory names there, so here too.
		for _, x := range deliver.MaildirPlaceholders(out.Maildir) {
			ph := x.Text
			switch {
			case !x.Known:
				p.errorf(d.MaildirRange, "Unknown placeholder",
					"maildir contains %s; only {user} and {domain} are replaced (in multidrop accounts).", ph)
			case !perUser:
				where := "the deliver block of a single-drop account"
				if what != "deliver" {
					where = "a " + what + " block"
				}
				p.errorf(d.MaildirRange, "Placeholder not allowed here",
					"maildir contains %s, but %s has no per-user recipient to substitute; {user} and {domain} are only allowed in the deliver and user blocks of multidrop accounts.",
					ph, where)
			}
		}
		out.Maildir, _ = p.path(out.Maildir, d.MaildirRange)
	}
	if d.Folder != nil {
		out.FolderRange = d.FolderRange
		switch {
		case d.Maildir == nil:
			p.errorf(d.FolderRange, "Option needs maildir",
				"folder names a Maildir++ folder and only applies to a maildir target.")
		default:
			if err := deliver.ValidFolder(*d.Folder); err != nil {
				p.errorf(d.FolderRange, "Invalid folder",
					"folder = %q: %v. A folder is written as a mail reader shows it, levels separated by dots: \"Junk\", \"Lists.dev\".", *d.Folder, err)
			} else {
				out.Folder = *d.Folder
			}
		}
	}
	if d.MDA != nil {
		out.MDA, out.MDARange = *d.MDA, d.MDARange
		p.mda(out.MDA, d.MDARange, what, perUser)
	}
	if d.MDA == nil && (d.MDATimeout != nil || d.MDAAllowStderr != nil || d.MDATempExitCodes != nil) {
		rng := d.MDATimeoutRange
		if !isSet(rng) {
			rng = d.MDAAllowStderrRange
		}
		if !isSet(rng) {
			rng = d.MDATempExitCodesRange
		}
		p.errorf(rng, "Option needs mda", "mda_timeout, mda_allow_stderr and mda_temp_exit_codes only apply to an mda target.")
	}
	if d.MDATempExitCodes != nil {
		out.MDATempExitCodes = p.mdaTempExitCodes(*d.MDATempExitCodes, d.MDATempExitCodesRange)
	}
	out.MDATimeout = p.duration(d.MDATimeout, d.MDATimeoutRange, "mda_timeout", 5*time.Minute, time.Second, 24*time.Hour)
	if d.MDAAllowStderr != nil {
		out.MDAAllowStderr = *d.MDAAllowStderr
	}
	if d.SMTP != nil {
		out.SMTP = p.smtp(d.SMTP)
	}
	return out
}

// userHere says what {user} becomes outside multidrop routing.
func userHere(what string) string {
	if what == "postmaster" {
		return "\"postmaster\""
	}
	return "the local user popfetch runs as"
}

// mdaTempExitCodes checks mda_temp_exit_codes: exit statuses 1 to 255
// (0 is success and can never mean "try again").
func (p *parser) mdaTempExitCodes(codes []int, rng hcl.Range) []int {
	if len(codes) == 0 {
		p.errorf(rng, "Invalid mda_temp_exit_codes",
			"mda_temp_exit_codes needs at least one exit status, normally 75 (EX_TEMPFAIL), e.g. [75, 73, 74].")
		return []int{75}
	}
	for _, c := range codes {
		if c < 1 || c > 255 {
			p.errorf(rng, "Invalid mda_temp_exit_codes",
				"%d is not an exit status that can mean \"try again later\"; use numbers from 1 to 255 (0 is success).", c)
			return []int{75}
		}
	}
	if !slices.Contains(codes, 75) {
		p.warnf(rng, "EX_TEMPFAIL not temporary",
			"mda_temp_exit_codes does not contain 75 (EX_TEMPFAIL), the status MDAs use for \"try again later\"; such a message will go to the postmaster instead of waiting on the server.")
	}
	return slices.Clone(codes)
}

// mda checks an mda argv. perUser says whether there is a routed
// recipient address: only in multidrop deliver and user blocks. Elsewhere
// {address} and {domain} would be empty for every message, and the MDA
// target refuses an empty value, so every delivery would fail.
func (p *parser) mda(argv []string, rng hcl.Range, what string, perUser bool) {
	if len(argv) == 0 {
		p.errorf(rng, "Invalid mda", `mda is a program and its arguments, e.g. ["/usr/bin/procmail", "-d", "{user}"].`)
		return
	}
	// No $PATH search: the MDA runs for every message, often as root,
	// and must be exactly the program the administrator named.
	if !filepath.IsAbs(argv[0]) {
		p.errorf(rng, "Invalid mda",
			"The program %q must be an absolute path such as \"/usr/bin/procmail\"; mda runs without a shell or $PATH search.", argv[0])
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			p.errorf(rng, "Invalid mda", "Argument %d contains a NUL byte.", i)
		}
		phs := deliver.MDAPlaceholders(a)
		if i == 0 && len(phs) == 0 && strings.ContainsRune(a, '{') {
			p.errorf(rng, "Invalid mda", "The mda program path %q must not contain '{'.", a)
		}
		for _, x := range phs {
			ph := x.Text
			if !x.Known {
				p.errorf(rng, "Unknown placeholder",
					"mda argument %q contains %s; the placeholders are {user}, {address}, {domain} and {sender}.", a, ph)
			} else if i == 0 {
				p.errorf(rng, "Placeholder not allowed here", "The mda program path must not contain %s.", ph)
			} else if !perUser && (ph == "{address}" || ph == "{domain}") {
				where := "the deliver block of a single-drop account"
				if what != "deliver" {
					where = "a " + what + " block"
				}
				p.errorf(rng, "Placeholder not allowed here",
					"mda argument %q contains %s, but %s has no routed recipient address; %s is only known in a multidrop account's deliver and user blocks. Use {user} (here: %s).",
					a, ph, where, ph, userHere(what))
			}
		}
	}
	// A placeholder pasted into a shell script is an injection path: the
	// shell parses the substituted value (an address from a message's
	// header) as code. Passed as a positional parameter it stays one word.
	if i := shellScript(argv); i > 0 {
		for _, x := range deliver.MDAPlaceholders(argv[i]) {
			if x.Known {
				p.errorf(rng, "Placeholder in a shell script",
					"mda argument %d is the script of %s -c and contains %s; the shell would run the substituted value as code. Pass it as a positional parameter of the shell instead, e.g. [\"/bin/sh\", \"-c\", \"procmail -d \\\"$1\\\"\", \"sh\", \"%s\"].",
					i, filepath.Base(argv[0]), x.Text, x.Text)
				break
			}
		}
	}
}

func (p *parser) smtp(s *smtpHCL) *SMTP {
	out := &SMTP{TLS: TLSNone}
	if v, ok := p.required(s.Server, s.ServerRange, s.DefRange, "server", `server = "localhost:24" or "/run/dovecot/lmtp"`); ok {
		if strings.HasPrefix(v, "/") || strings.HasPrefix(v, "~") || strings.HasPrefix(v, "$") {
			out.Server, _ = p.path(v, s.ServerRange)
		} else if host, port, err := net.SplitHostPort(v); err != nil || host == "" {
			p.errorf(s.ServerRange, "Invalid smtp server",
				`smtp server is "host:port" (e.g. "localhost:25", "[::1]:24") or the absolute path of a unix socket, not %q.`, v)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.errorf(s.ServerRange, "Invalid smtp server", "The port in %q must be a number between 1 and 65535.", v)
		} else {
			out.Server = v
		}
	}
	if s.LMTP != nil {
		out.LMTP = *s.LMTP
	}
	if s.Helo != nil {
		out.Helo = *s.Helo
		if strings.IndexFunc(out.Helo, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
			p.errorf(s.HeloRange, "Invalid helo", "helo must be a host name without spaces or control characters.")
		}
	}
	if s.TLS != nil {
		out.TLS = p.tlsMode(*s.TLS, s.TLSRange)
	}
	if s.CAFile != nil {
		out.CAFile = p.optPath(*s.CAFile, s.CAFileRange)
	}
	if s.Sender != nil {
		out.Sender = *s.Sender
		if strings.ContainsAny(out.Sender, "\r\n\x00<> ") {
			p.errorf(s.SenderRange, "Invalid sender",
				"sender is a bare address such as \"fetch@example.com\", without <>, spaces or control characters.")
		}
	}
	out.Timeout = p.duration(s.Timeout, s.TimeoutRange, "timeout", 5*time.Minute, time.Second, time.Hour)
	return out
}

// Canonical spellings, keyed by lower case: header names are
// case-insensitive on input (RFC 5322 §1.2.2) but printed canonically.
var (
	envelopeHeaders = canon("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Received")
	fallbackHeaders = canon("To", "Cc", "Resent-To", "Resent-Cc", "Apparently-To")
)

func canon(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}

// DefaultEnvelopeHeader is Delivered-To: Postfix, Exim, Dovecot, qmail and
// most hosted catch-all mailboxes add it per recipient at final delivery,
// so it names Bcc and list recipients that To/Cc never show. A default of
// "" (header guessing only) would silently misroute Bcc mail.
const DefaultEnvelopeHeader = "Delivered-To"

// DefaultFallbackHeaders are the headers guessed from when the envelope
// header names no local recipient.
var DefaultFallbackHeaders = []string{"To", "Cc", "Resent-To", "Resent-Cc"}

func (p *parser) multidrop(m *multidropHCL) *Multidrop {
	out := &Multidrop{EnvelopeHeader: DefaultEnvelopeHeader, EnvelopeCount: 1, DetailDelimiter: "+",
		FallbackHeaders: append([]string(nil), DefaultFallbackHeaders...)}

	switch {
	case m.LocalDomains == nil && !isSet(m.LocalDomainsRange):
		p.errorf(m.DefRange, "Missing local_domains",
			`A multidrop block needs local_domains, e.g. local_domains = ["example.com"].`)
	case m.LocalDomains != nil && len(*m.LocalDomains) == 0:
		p.errorf(m.LocalDomainsRange, "Missing local_domains", "local_domains must name at least one domain.")
	case m.LocalDomains != nil:
		for _, d := range *m.LocalDomains {
			out.LocalDomains = append(out.LocalDomains, p.domain(d, m.LocalDomainsRange))
		}
	}
	if m.EnvelopeHeader != nil {
		if *m.EnvelopeHeader == "" {
			out.EnvelopeHeader = ""
		} else if c, ok := envelopeHeaders[strings.ToLower(*m.EnvelopeHeader)]; ok {
			out.EnvelopeHeader = c
		} else {
			p.errorf(m.EnvelopeHeaderRange, "Invalid envelope_header",
				`envelope_header must be one of "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Received", or "" for none; not %q.`, *m.EnvelopeHeader)
		}
	}
	if m.EnvelopeCount != nil {
		out.EnvelopeCount = *m.EnvelopeCount
		if out.EnvelopeCount < 1 {
			p.errorf(m.EnvelopeCountRange, "Invalid envelope_count", "envelope_count must be at least 1, not %d.", out.EnvelopeCount)
		}
	}
	if m.ReceivedBy != nil {
		out.ReceivedBy = strings.ToLower(*m.ReceivedBy)
		if strings.ContainsAny(out.ReceivedBy, " \t\r\n\x00/@") {
			p.errorf(m.ReceivedByRange, "Invalid received_by", "received_by is the host name in the provider's \"by\" clause.")
		}
	}
	if out.EnvelopeHeader == "Received" && out.ReceivedBy == "" {
		p.errorf(m.EnvelopeHeaderRange, "Missing received_by",
			`With envelope_header = "Received" set received_by to your provider's host in the "by" clause; lower Received lines can be forged by the sender.`)
	}
	if m.FallbackHeaders != nil {
		out.FallbackHeaders = []string{}
		for _, h := range *m.FallbackHeaders {
			c, ok := fallbackHeaders[strings.ToLower(h)]
			if !ok {
				p.errorf(m.FallbackHeadersRange, "Invalid fallback_headers",
					`fallback_headers may contain "To", "Cc", "Resent-To", "Resent-Cc" and "Apparently-To", not %q.`, h)
				continue
			}
			out.FallbackHeaders = append(out.FallbackHeaders, c)
		}
	}
	if m.DetailDelimiter != nil {
		out.DetailDelimiter = *m.DetailDelimiter
		r, n := utf8.DecodeRuneInString(out.DetailDelimiter)
		if out.DetailDelimiter != "" && (n != len(out.DetailDelimiter) || r == '@' || r == utf8.RuneError ||
			unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsSpace(r) || unicode.IsControl(r)) {
			p.errorf(m.DetailDelimiterRange, "Invalid detail_delimiter",
				`detail_delimiter is one punctuation character such as "+" or "-", or "" to turn it off; not %q.`, out.DetailDelimiter)
		}
	}
	if m.CaseSensitive != nil {
		out.CaseSensitive = *m.CaseSensitive
	}
	if m.AliasesFile != nil {
		out.AliasesFile = p.optPath(*m.AliasesFile, m.AliasesFileRange)
		out.AliasesFileRange = m.AliasesFileRange
	}
	if m.SystemUsers != nil {
		out.SystemUsers = *m.SystemUsers
	}
	if m.QVirtual != nil {
		out.QVirtual = *m.QVirtual
		if strings.ContainsAny(out.QVirtual, " \t\r\n\x00@") {
			p.errorf(m.QVirtualRange, "Invalid qvirtual", "qvirtual is a prefix such as \"example-com-\", without spaces or @.")
		}
	}
	if m.DedupeMessageID != nil {
		out.DedupeMessageID = *m.DedupeMessageID
	}
	if m.EnvelopeIgnore != nil {
		out.EnvelopeIgnore = []string{}
		for _, a := range *m.EnvelopeIgnore {
			norm, _, dom, ok := p.address(a, m.EnvelopeIgnoreRange, out)
			if ok && dom == "" {
				p.errorf(m.EnvelopeIgnoreRange, "Invalid envelope_ignore",
					`envelope_ignore lists full addresses such as "catchall@example.com", not the local part %q alone.`, a)
				continue
			}
			if ok {
				out.EnvelopeIgnore = append(out.EnvelopeIgnore, norm)
			}
		}
	}
	p.users(m, out)
	if m.LDAP != nil {
		out.LDAP = p.ldap(m.LDAP)
	}
	if len(m.Users) == 0 && out.AliasesFile == "" && !out.SystemUsers && m.LDAP == nil {
		p.errorf(m.DefRange, "No local users",
			"This multidrop block names no recipients: add user \"name\" { ... } blocks, an aliases_file, an ldap { ... } directory, or system_users = true.")
	}
	return out
}

// domain normalises a local domain with the router's own normalisation
// (deliver.NormalizeDomain: lower-case A-labels), so that it compares
// equal to what the router computes from headers.
func (p *parser) domain(d string, rng hcl.Range) string {
	wild := strings.HasPrefix(d, "*.")
	a, ok := deliver.NormalizeDomain(strings.TrimPrefix(d, "*."))
	if !ok || !strings.Contains(a, ".") && a != "localhost" || strings.ContainsAny(a, "*@ /[") {
		p.errorf(rng, "Invalid local domain",
			`%q is not a domain name; write e.g. "example.com", "*.example.com" or "bücher.example".`, d)
		return strings.ToLower(d)
	}
	if wild {
		return "*." + a
	}
	return a
}

// userNameRE keeps user names safe inside a Maildir path ({user}) and an
// MDA argv (no leading "-" that a program would take for an option).
var userNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]*$`)

type claim struct {
	user string
	rng  hcl.Range
}

func (p *parser) users(m *multidropHCL, out *Multidrop) {
	names := map[string]hcl.Range{}
	exact := map[string]claim{}     // "joe" or "joe@example.com"
	bare := map[string]claim{}      // local part claimed in every local domain
	fullLocal := map[string]claim{} // local part claimed in one local domain
	conflict := func(prev claim, u *userHCL, addr string) {
		p.errorf(u.AddressesRange, "Address claimed twice",
			"Address %q of user %q is already claimed by user %q at %s; each address belongs to one user.", addr, u.Name, prev.user, prev.rng)
	}
	for _, u := range m.Users {
		if prev, ok := names[u.Name]; ok {
			p.errorf(u.NameRange, "Duplicate user", "User %q is already declared at %s.", u.Name, prev)
			continue
		}
		names[u.Name] = u.DefRange
		if !userNameRE.MatchString(u.Name) || len(u.Name) > 64 {
			p.errorf(u.NameRange, "Invalid user name",
				"User name %q may use letters, digits and . _ + - (not first), at most 64 characters; it becomes part of paths and arguments.", u.Name)
		}
		user := &User{Name: u.Name, DeclRange: u.DefRange}
		addrs := []string{u.Name}
		rng := u.NameRange
		if u.Addresses != nil {
			addrs, rng = *u.Addresses, u.AddressesRange
		}
		for _, a := range addrs {
			norm, lp, dom, ok := p.address(a, rng, out)
			if !ok {
				continue
			}
			user.Addresses = append(user.Addresses, norm)
			c := claim{u.Name, rng}
			if prev, ok := exact[norm]; ok && prev.user != u.Name {
				conflict(prev, u, a)
				continue
			}
			exact[norm] = c
			switch {
			case dom == "":
				if prev, ok := fullLocal[lp]; ok && prev.user != u.Name {
					conflict(prev, u, a)
				}
				bare[lp] = c
			case matchDomain(out.LocalDomains, dom):
				if prev, ok := bare[lp]; ok && prev.user != u.Name {
					conflict(prev, u, a)
				}
				fullLocal[lp] = c
			default:
				p.warnf(rng, "Address never matches",
					"Address %q of user %q is not in local_domains, so no message will be routed by it.", a, u.Name)
			}
		}
		if u.Deliver != nil {
			user.Deliver = p.dest(u.Deliver, "user deliver", true)
		}
		user.Rules = p.rules(u.Rules, fmt.Sprintf("user %q", u.Name), true)
		out.Users = append(out.Users, user)
	}
}

// address normalises a user's address: the domain always lower-case
// A-labels, the local part lower-case unless case_sensitive.
func (p *parser) address(a string, rng hcl.Range, m *Multidrop) (norm, local, domain string, ok bool) {
	local, domain, _ = strings.Cut(a, "@")
	if local == "" || len(local) > 64 || strings.ContainsAny(a, " \t\r\n\x00<>,;\"") || strings.Contains(domain, "@") ||
		strings.Contains(a, "@") && domain == "" {
		p.errorf(rng, "Invalid address",
			`%q is not an address; write a local part such as "alice" or a full address such as "alice@example.com".`, a)
		return "", "", "", false
	}
	if !m.CaseSensitive {
		local = strings.ToLower(local)
	}
	if domain == "" {
		return local, local, "", true
	}
	d, ok := deliver.NormalizeDomain(domain)
	if !ok || d[0] == '[' {
		p.errorf(rng, "Invalid address", "The domain of %q is not a valid domain name.", a)
		return "", "", "", false
	}
	domain = d
	return local + "@" + domain, local, domain, true
}

// matchDomain reports whether dom is one of the local domains; "*.x"
// matches subdomains of x (not x itself).
func matchDomain(locals []string, dom string) bool {
	for _, l := range locals {
		if l == dom || strings.HasPrefix(l, "*.") && strings.HasSuffix(dom, l[1:]) {
			return true
		}
	}
	return false
}

// sharedBox warns when every user without an own deliver block would land
// in one mailbox. That is legal (a catch-all copied to one person, or an
// MDA that sorts by itself), so it is not an error, but usually it is a
// forgotten {user}.
func (p *parser) sharedBox(a *Account, s *settingsHCL) {
	d := a.Deliver
	shared := false
	switch {
	case d.Maildir != "":
		shared = !strings.Contains(d.Maildir, "{user}")
	case d.MDA != nil:
		shared = !strings.Contains(strings.Join(d.MDA, "\x00"), "{user}") && !strings.Contains(strings.Join(d.MDA, "\x00"), "{address}")
	}
	if !shared {
		return
	}
	fallthroughUsers := a.Multidrop.SystemUsers || a.Multidrop.AliasesFile != "" || a.Multidrop.LDAP != nil
	for _, u := range a.Multidrop.Users {
		if u.Deliver == nil {
			fallthroughUsers = true
		}
	}
	if fallthroughUsers {
		p.warnf(s.Deliver.DefRange, "All users share one mailbox",
			"This multidrop account's deliver target does not contain {user} (or {address} for mda), so every user without an own deliver block gets the same mailbox.")
	}
}

// mailboxes rejects two accounts for one mailbox (Account.Mailbox: the
// same server, DNS names being case-insensitive, and the same username,
// unless mailbox_id says otherwise). The daemon keeps one session per
// account and the UIDL store is keyed by state_dir too, so two such blocks
// that differ in state_dir or port (110 and 995 of one server) would poll
// in parallel with separate seen-UID records and deliver every message
// twice.
func (p *parser) mailboxes(accts []*Account) {
	seen := map[string]*Account{}
	for _, a := range accts {
		if a.Server == "" || a.Username == "" {
			continue // already reported as missing
		}
		key := a.Mailbox()
		if prev, ok := seen[key]; ok {
			p.errorf(a.DeclRange, "Duplicate mailbox",
				"Mailbox %s is already declared at %s (account %q); two accounts for one mailbox would fetch and deliver every message twice. If they are two different mailboxes behind one host name (two tunnels), give each a distinct mailbox_id.",
				key, prev.DeclRange, prev.Name)
			continue
		}
		seen[key] = a
	}
}

// fmtDuration prints 5m instead of time.Duration's 5m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
