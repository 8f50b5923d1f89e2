// Package rcfile reads popfetch's HCL run-control file: the schema, its
// defaults, and validation that reports every problem as an HCL diagnostic
// with file:line:col. Of popfetch it imports only internal/trust (whether
// a file it reads may be trusted) and deliver, the owner of the rules that
// validation must agree with: domain normalisation
// (deliver.NormalizeDomain), the MDA placeholders
// (deliver.MDAPlaceholders), folder names (deliver.ValidFolder) and
// filing rules (deliver/rules.Check).
//
// Find picks the file, Load reads it (adding the permission rule for
// passwords) and Parse does the pure work; WriteDiagnostics and
// FormatDiagnostic render problems, Config.Format the effective settings,
// and Password.Resolve fetches a secret only when it is needed. The schema
// is documented for users in man/popfetch.hcl.5; doc_test.go keeps the two
// in step.
package rcfile

import (
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/popfetch/popfetch/deliver/rules"
)

// TLSMode says how the POP3 connection is protected.
type TLSMode string

const (
	TLSImplicit TLSMode = "implicit" // POP3S, port 995 (RFC 8314: preferred)
	TLSStartTLS TLSMode = "starttls" // STLS on port 110; required, never downgraded
	TLSNone     TLSMode = "none"     // plaintext: only for loopback or tests
)

// AuthMethod is how an account logs in (the auth setting). The values are
// those of package fetch/pop3's Mechanism, which runs them.
type AuthMethod string

const (
	AuthAuto        AuthMethod = "auto" // the strongest the server offers (see popfetch.hcl(5))
	AuthUser        AuthMethod = "user" // USER/PASS
	AuthAPOP        AuthMethod = "apop"
	AuthPlain       AuthMethod = "plain"
	AuthSCRAMSHA256 AuthMethod = "scram-sha-256"
	AuthSCRAMSHA1   AuthMethod = "scram-sha-1"
	AuthXOAUTH2     AuthMethod = "xoauth2"
	AuthOAUTHBEARER AuthMethod = "oauthbearer"
)

// AuthMethods lists every AuthMethod, auto first.
var AuthMethods = []AuthMethod{AuthAuto, AuthUser, AuthAPOP, AuthPlain, AuthSCRAMSHA256, AuthSCRAMSHA1, AuthXOAUTH2, AuthOAUTHBEARER}

// Config is a validated rc file with every default applied.
type Config struct {
	Path        string // the file it was read from
	StateDir    string // absolute, ~ and $VAR expanded; default ~/.local/state/popfetch (root: /var/lib/popfetch)
	MaxParallel int    // sessions at once across all servers; default 8
	PerServer   int    // sessions at once to one server host; default 2
	Accounts    []*Account

	// Shard is the part of the accounts this replica polls (shard =
	// "i/N"); zero = all. The command line and the environment override
	// it (popfetch(1), --shard), so Accounts keeps every account.
	Shard      Shard
	ShardRange hcl.Range // where shard is set, for diagnostics; zero if it is not

	// MetricsListen is where `popfetch run` serves /metrics and /healthz:
	// "" (off, the default), host:port or IP:port for TCP, or an absolute
	// path for a unix socket.
	MetricsListen string

	// Alert is the top-level alert block: where alerts about the daemon
	// itself (a rejected reload) go, and the default of every account
	// whose own and defaults block set none; nil = alerts are only logged.
	Alert *Alert
	// AccountAlerts holds the alert block an account sets, or inherits
	// from the defaults block, by account name. It is kept out of
	// Account so that changing where alerts go does not count as a
	// change of the account (which would lift its hold and restart its
	// fetch_all pass). AlertFor picks the one that applies.
	AccountAlerts map[string]*Alert
}

// AlertFor returns the alert block that applies to the account named
// name (its own, the defaults block's, or the top-level one), or, for
// name "", the top-level one; nil if none is set.
func (c *Config) AlertFor(name string) *Alert {
	if a := c.AccountAlerts[name]; name != "" && a != nil {
		return a
	}
	return c.Alert
}

// Alert is an alert block: where notices of trouble go (any of a
// Maildir, an SMTP/LMTP server with a recipient, a command reading JSON)
// and when trouble counts.
type Alert struct {
	Maildir string // absolute; "" = none
	SMTP    *SMTP  // nil = none; To is then required
	To      string // recipient of the messages (SMTP), and their To:; "" = postmaster@host
	// Command is run without a shell for every alert, with one JSON
	// document on stdin; nil = none.
	Command []string
	// After is how long a failure lasts before it is an alert; 0 = the
	// default, the longer of 1h and three polls of the account.
	After time.Duration
	// MailboxMessages and MailboxSize are the mailbox-full thresholds of
	// a keep-mode account; 0 = none.
	MailboxMessages int
	MailboxSize     int64

	Range hcl.Range // the alert block, for diagnostics
}

// Account is one POP3 mailbox and where its mail goes.
type Account struct {
	Name        string
	Server      string
	Port        int     // default 995 for implicit TLS, else 110
	TLS         TLSMode // default implicit
	CAFile      string  // PEM bundle replacing the system roots; "" = system roots
	Fingerprint string  // lower-case hex SHA-256 of the server certificate's SubjectPublicKeyInfo; "" = no pin
	CheckName   bool    // with a Fingerprint, the certificate must name Server too (without one it always must)
	Username    string
	Password    Password
	Auth        AuthMethod // default auto

	Keep bool // leave mail on the server (no DELE)
	// DeleteAfter, with Keep, deletes a message from the server once it
	// was recorded as delivered this long ago; 0 = never.
	DeleteAfter time.Duration
	FetchAll    bool          // fetch messages already seen too
	Limit       int64         // bytes; larger messages stay on the server; 0 = no limit
	FetchLimit  int           // max messages per poll; 0 = no limit
	Timeout     time.Duration // per command and per TLS handshake; default 60s
	Interval    time.Duration // daemon poll interval; default 5m

	// QuietMessages (log_messages = false) leaves out the audit line of
	// each delivered message; the zero value logs it, the default.
	QuietMessages bool

	Deliver    Destination  // single-drop target, or the default for multidrop users
	Postmaster *Destination // permanent failures and unroutable multidrop mail; nil = keep on server and alert
	Multidrop  *Multidrop   // nil for a single-drop account
	// Rules are the account's filing rules, in order (rule blocks; an
	// account without any inherits the defaults block's). See Rule.
	Rules []Rule
	// Filters are the account's spam and virus filters, run in order on
	// each message before the filing rules (filter blocks; an account
	// without any inherits the defaults block's). TrustedReceived says
	// which Received: field tells them the sending client.
	Filters         []Filter
	TrustedReceived TrustedReceived

	StateDir string // inherited from the top level unless set per account
	// MailboxID, when set, replaces USERNAME@SERVER as the mailbox's name
	// (see Mailbox): for two different mailboxes behind one host name and
	// user (two tunnels on 127.0.0.1). It never contains '@', so it never
	// equals the name of an account without one.
	MailboxID string

	DeclRange hcl.Range // where the account block starts, for diagnostics at run time

	// OAuth2 signs in with an OAuth2 access token that package fetch/oauth
	// obtains (popfetch login) and refreshes; nil if not configured.
	// OAuth2TokenCommand is the alternative: a helper that prints the
	// access token (RunTokenCommand). At most one of them is set; with
	// either, the password is optional.
	OAuth2             *OAuth2
	OAuth2TokenCommand []string
}

// Mailbox names the mailbox a polls: its username at its server (DNS names
// are case-insensitive), whatever the port, TLS mode or state_dir, or its
// mailbox_id if set. It is the one rule for "the same mailbox": two
// accounts with one Mailbox are a config error, the daemon never polls one
// Mailbox twice at once, and the seen-UID journal is named by it
// (uidl.Path), so moving from STLS on 110 to implicit TLS on 995 keeps the
// journal.
func (a *Account) Mailbox() string {
	if a.MailboxID != "" {
		return a.MailboxID
	}
	return a.Username + "@" + strings.ToLower(a.Server)
}

// Password is one password source. Exactly one field is set.
type Password struct {
	Inline  string   // password = "..."
	File    string   // password_file = "path": first line of the file
	Env     string   // password_env = "NAME"
	Command []string // password_command = [argv...]: first line of stdout, run without a shell

	Range hcl.Range // the attribute that set it, for diagnostics; never holds the secret
}

// Destination is where a message goes: exactly one of Maildir, MDA, SMTP.
type Destination struct {
	// Maildir path; for multidrop it may contain {user} and {domain}.
	Maildir string
	// Folder is the Maildir++ folder of Maildir that mail goes to ("Junk"
	// for the directory .Junk, "Lists.dev" for .Lists.dev; see
	// deliver.ValidFolder); "" is the inbox. Only with Maildir.
	Folder string
	// MDA argv, run without a shell. Placeholders {user} {address}
	// {domain} {sender} each become exactly one argv element.
	MDA            []string
	MDATimeout     time.Duration // default 5m; the whole process group is killed after it
	MDAAllowStderr bool          // default false: output on stderr with exit 0 is a permanent failure
	// MDATempExitCodes are the exit statuses that leave the message on the
	// server for the next poll; any other non-zero status is permanent.
	// Default [75] (EX_TEMPFAIL).
	MDATempExitCodes []int
	SMTP             *SMTP

	MDARange     hcl.Range // where mda is set, for diagnostics
	MaildirRange hcl.Range // where maildir is set, for diagnostics
	FolderRange  hcl.Range // where folder is set, for diagnostics
}

// SMTP is an SMTP or LMTP delivery target.
type SMTP struct {
	Server  string // "host:port", or a unix socket path (absolute) for LMTP
	LMTP    bool
	Helo    string        // default: os.Hostname
	TLS     TLSMode       // "none" (default for loopback/unix), "starttls", "implicit"
	CAFile  string        //
	Sender  string        // envelope sender; "" = the message's Return-Path, else the null path <>
	Timeout time.Duration // per command, default 5m; the final dot always gets at least 10m (RFC 5321 §4.5.3.2)
}

// Multidrop distributes one catch-all mailbox to local users by headers.
type Multidrop struct {
	LocalDomains []string // lower-case, IDNA A-labels; "*.example.com" matches subdomains only, not example.com
	// EnvelopeHeader is Delivered-To, X-Original-To, Envelope-To,
	// X-Envelope-To or Received (the "for <addr>" clause); "" = none.
	EnvelopeHeader string
	EnvelopeCount  int    // trust only this many topmost occurrences; default 1
	ReceivedBy     string // with EnvelopeHeader = "Received": only lines "by" this host count
	// EnvelopeIgnore are full addresses (local part folded as for users,
	// domain in lower-case A-labels) that the envelope header names on
	// every message, such as the catch-all mailbox: never a recipient.
	// The fetch package adds the account's username when it is an
	// address.
	EnvelopeIgnore []string
	// FallbackHeaders are consulted only when the envelope header names no
	// local recipient. Default To, Cc, Resent-To, Resent-Cc.
	FallbackHeaders []string
	DetailDelimiter string // sub-address delimiter stripped before lookup; default "+", "" = off
	CaseSensitive   bool   // local parts; default false
	AliasesFile     string // /etc/aliases format; "" = none
	// AliasesFileRange is where aliases_file is set, for diagnostics.
	AliasesFileRange hcl.Range
	SystemUsers      bool   // every local part that is a system user (os/user) is a user
	QVirtual         string // qmail virtual-domain prefix stripped from envelope addresses
	DedupeMessageID  bool   // drop a second copy with the same Message-ID for the same user in one poll
	Users            []*User
	// LDAP, when set, adds the users and addresses of an LDAP or Active
	// Directory directory to Users (configured users win a conflict).
	LDAP *LDAP
}

// LDAP is a multidrop directory kept in LDAP or Active Directory
// (multidrop { ldap { } }). It is loaded whole and kept for Refresh, never
// looked up per message; the fetch package owns that cache.
type LDAP struct {
	// URL is ldaps://host[:port] (TLS from the start) or ldap://host[:port]
	// (StartTLS, required: never a plain-text bind). The certificate is
	// verified like a POP3 server's, against CAFile or the system roots.
	URL      string
	CAFile   string
	BindDN   string   // "" = anonymous (then Password is zero)
	Password Password // the bind password, resolved only when binding
	BaseDN   string
	// Filter selects the user entries. The default fits Active
	// Directory: enabled person/user objects.
	Filter string
	// UserAttribute holds the local user name ({user}), lower-cased:
	// sAMAccountName (the default) for AD, uid for OpenLDAP.
	UserAttribute string
	// AddressAttributes hold the user's addresses; default mail,
	// proxyAddresses. Values of proxyAddresses count only with the smtp:
	// or SMTP: prefix (other address types are ignored).
	AddressAttributes []string
	// Groups expands groups: an address of an entry matching GroupFilter
	// delivers to every user entry its MemberAttribute names (by DN).
	Groups          bool
	GroupFilter     string        // default (objectClass=group)
	MemberAttribute string        // default member
	Refresh         time.Duration // reload after this long; default 5m
	// Grace is how long the last good copy keeps serving while the
	// directory cannot be loaded; default 24h, 0 = never (mail waits on
	// the server until the directory answers).
	Grace      time.Duration
	Timeout    time.Duration // connect, bind and the whole search; default 30s
	MaxEntries int           // entries read at most (users and groups); default 100000

	Range hcl.Range // the ldap block, for diagnostics
}

// User is a local user of a multidrop domain.
type User struct {
	Name      string       // local user name, used for {user}
	Addresses []string     // local parts or full addresses that belong to the user
	Deliver   *Destination // nil = the account's Deliver with {user} substituted
	// Rules are the user's own filing rules, evaluated on the user's
	// copy before the account's.
	Rules     []Rule
	DeclRange hcl.Range
}

// Filter is a filter block: a milter (Milter set) or a command filter
// (Command set), as package deliver/filter runs them.
type Filter struct {
	Name    string
	Milter  string   // "inet:HOST:PORT", "inet6:[HOST]:PORT" or "unix:/path"
	Command []string // argv: an absolute program path, {sender} the only placeholder
	// Timeout bounds the filter's work on one message (default 60s).
	Timeout time.Duration
	// TempExitCodes and RejectExitCodes map a command's exit status
	// (deliver/filter.CommandOptions); RejectExitCodes nil means every
	// non-zero status not in TempExitCodes rejects.
	TempExitCodes   []int
	RejectExitCodes []int
	// OnUnavailable is "tempfail" (default) or "accept"; OnReject is
	// "postmaster" (default) or "delete".
	OnUnavailable string
	OnReject      string
	DeclRange     hcl.Range
}

// Filter policies (on_unavailable, on_reject).
const (
	OnUnavailableTempFail = "tempfail"
	OnUnavailableAccept   = "accept"
	OnRejectPostmaster    = "postmaster"
	OnRejectDelete        = "delete"
)

// TrustedReceived is the trusted_received block: the Received: field at
// Position from the top, or when By is set the topmost one written by By.
// The zero value means the topmost field.
type TrustedReceived struct {
	By       string
	Position int
}

// Rule is a filing rule: rule "name" { header = ... equals|contains|matches
// = ... and one action }, as package deliver/rules compiles and evaluates
// it (rules.Compile of the Specs, in order). The rc file has checked
// each Spec with rules.Check.
type Rule struct {
	Spec rules.Spec
	// Deliver is the destination of a deliver action (Spec.Action.Kind
	// is rules.Deliver, and Spec.Action.Target the rule's index in its
	// list); nil otherwise.
	Deliver   *Destination
	DeclRange hcl.Range
}
