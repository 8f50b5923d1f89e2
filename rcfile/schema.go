package rcfile

import (
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// The private structs below are the rc file's schema, in gohcl's tag
// language, decoded by gohcl (decode.go adds what gohcl lacks).
// Attributes are pointers so that "absent" differs from the zero value:
// that is what lets an account inherit from the defaults block, and lets
// fallback_headers = [] mean "off" while an absent one means "default".
// Each attribute has an attr_range twin so that semantic errors found
// after decoding still point at file:line:col, and so that decode.go can
// tell which attribute a type error belongs to. doc_test.go walks these
// tags, so every name here must be documented in man/popfetch.hcl.5.

// fileHCL is the top level of the rc file.
type fileHCL struct {
	StateDir         *string       `hcl:"state_dir,optional"`
	StateDirRange    hcl.Range     `hcl:"state_dir,attr_range"`
	MaxParallel      *int          `hcl:"max_parallel,optional"`
	MaxParallelRange hcl.Range     `hcl:"max_parallel,attr_range"`
	PerServer        *int          `hcl:"per_server,optional"`
	PerServerRange   hcl.Range     `hcl:"per_server,attr_range"`
	Shard            *string       `hcl:"shard,optional"`
	ShardRange       hcl.Range     `hcl:"shard,attr_range"`
	MetricsListen    *string       `hcl:"metrics_listen,optional"`
	MetricsRange     hcl.Range     `hcl:"metrics_listen,attr_range"`
	Alert            *alertHCL     `hcl:"alert,block"`
	Defaults         *defaultsHCL  `hcl:"defaults,block"`
	Accounts         []*accountHCL `hcl:"account,block"`
}

// The defaults block and every account block hold the same settings;
// parse.go's inherit merges them.
type defaultsHCL struct {
	Settings settingsHCL `hcl:",remain"`
}

type accountHCL struct {
	Name      string      `hcl:"name,label"`
	NameRange hcl.Range   `hcl:"name,label_range"`
	Settings  settingsHCL `hcl:",remain"`
	DefRange  hcl.Range   `hcl:",def_range"`
}

// settingsHCL is everything an account (or the defaults block) may set.
type settingsHCL struct {
	Server               *string   `hcl:"server,optional"`
	ServerRange          hcl.Range `hcl:"server,attr_range"`
	Port                 *int      `hcl:"port,optional"`
	PortRange            hcl.Range `hcl:"port,attr_range"`
	TLS                  *string   `hcl:"tls,optional"`
	TLSRange             hcl.Range `hcl:"tls,attr_range"`
	CAFile               *string   `hcl:"ca_file,optional"`
	CAFileRange          hcl.Range `hcl:"ca_file,attr_range"`
	Fingerprint          *string   `hcl:"tls_fingerprint,optional"`
	FingerprintRange     hcl.Range `hcl:"tls_fingerprint,attr_range"`
	CheckName            *bool     `hcl:"tls_check_name,optional"`
	CheckNameRange       hcl.Range `hcl:"tls_check_name,attr_range"`
	Username             *string   `hcl:"username,optional"`
	UsernameRange        hcl.Range `hcl:"username,attr_range"`
	Password             *string   `hcl:"password,optional"`
	PasswordRange        hcl.Range `hcl:"password,attr_range"`
	PasswordFile         *string   `hcl:"password_file,optional"`
	PasswordFileRange    hcl.Range `hcl:"password_file,attr_range"`
	PasswordEnv          *string   `hcl:"password_env,optional"`
	PasswordEnvRange     hcl.Range `hcl:"password_env,attr_range"`
	PasswordCommand      *[]string `hcl:"password_command,optional"`
	PasswordCommandRange hcl.Range `hcl:"password_command,attr_range"`
	Auth                 *string   `hcl:"auth,optional"`
	AuthRange            hcl.Range `hcl:"auth,attr_range"`
	Keep                 *bool     `hcl:"keep,optional"`
	KeepRange            hcl.Range `hcl:"keep,attr_range"`
	FetchAll             *bool     `hcl:"fetch_all,optional"`
	FetchAllRange        hcl.Range `hcl:"fetch_all,attr_range"`
	DeleteAfter          *string   `hcl:"delete_after,optional"`
	DeleteAfterRange     hcl.Range `hcl:"delete_after,attr_range"`
	LogMessages          *bool     `hcl:"log_messages,optional"`
	LogMessagesRange     hcl.Range `hcl:"log_messages,attr_range"`
	// Limit is an expression because it is a number or a string with a unit.
	Limit           hcl.Expression `hcl:"limit,optional"`
	LimitRange      hcl.Range      `hcl:"limit,attr_range"`
	FetchLimit      *int           `hcl:"fetch_limit,optional"`
	FetchLimitRange hcl.Range      `hcl:"fetch_limit,attr_range"`
	Timeout         *string        `hcl:"timeout,optional"`
	TimeoutRange    hcl.Range      `hcl:"timeout,attr_range"`
	Interval        *string        `hcl:"interval,optional"`
	IntervalRange   hcl.Range      `hcl:"interval,attr_range"`
	StateDir        *string        `hcl:"state_dir,optional"`
	StateDirRange   hcl.Range      `hcl:"state_dir,attr_range"`
	MailboxID       *string        `hcl:"mailbox_id,optional"`
	MailboxIDRange  hcl.Range      `hcl:"mailbox_id,attr_range"`
	Deliver         *destHCL       `hcl:"deliver,block"`
	Postmaster      *destHCL       `hcl:"postmaster,block"`
	Multidrop       *multidropHCL  `hcl:"multidrop,block"`
	Rules           []*ruleHCL     `hcl:"rule,block"`
	Filters         []*filterHCL   `hcl:"filter,block"`
	TrustedReceived *trustedHCL    `hcl:"trusted_received,block"`
	Alert           *alertHCL      `hcl:"alert,block"`

	// OAuth2 and OAuth2TokenCommand are the two ways to get an OAuth2
	// access token (oauth2.go).
	OAuth2                  *oauth2HCL `hcl:"oauth2,block"`
	OAuth2TokenCommand      *[]string  `hcl:"oauth2_token_command,optional"`
	OAuth2TokenCommandRange hcl.Range  `hcl:"oauth2_token_command,attr_range"`
}

// oauth2HCL is an account's OAuth2 client registration (see oauth2.go).
type oauth2HCL struct {
	Provider              *string   `hcl:"provider,optional"`
	ProviderRange         hcl.Range `hcl:"provider,attr_range"`
	ClientID              *string   `hcl:"client_id,optional"`
	ClientIDRange         hcl.Range `hcl:"client_id,attr_range"`
	ClientSecret          *string   `hcl:"client_secret,optional"`
	ClientSecretRange     hcl.Range `hcl:"client_secret,attr_range"`
	ClientSecretFile      *string   `hcl:"client_secret_file,optional"`
	ClientSecretFileRange hcl.Range `hcl:"client_secret_file,attr_range"`
	Tenant                *string   `hcl:"tenant,optional"`
	TenantRange           hcl.Range `hcl:"tenant,attr_range"`
	Scopes                *[]string `hcl:"scopes,optional"`
	ScopesRange           hcl.Range `hcl:"scopes,attr_range"`
	Flow                  *string   `hcl:"flow,optional"`
	FlowRange             hcl.Range `hcl:"flow,attr_range"`
	AuthURL               *string   `hcl:"auth_url,optional"`
	AuthURLRange          hcl.Range `hcl:"auth_url,attr_range"`
	TokenURL              *string   `hcl:"token_url,optional"`
	TokenURLRange         hcl.Range `hcl:"token_url,attr_range"`
	DeviceURL             *string   `hcl:"device_url,optional"`
	DeviceURLRange        hcl.Range `hcl:"device_url,attr_range"`
	DefRange              hcl.Range `hcl:",def_range"`
}

// alertHCL is an alert block (alert.go), at the top level, in defaults
// or in an account.
type alertHCL struct {
	Maildir              *string        `hcl:"maildir,optional"`
	MaildirRange         hcl.Range      `hcl:"maildir,attr_range"`
	SMTP                 *smtpHCL       `hcl:"smtp,block"`
	To                   *string        `hcl:"to,optional"`
	ToRange              hcl.Range      `hcl:"to,attr_range"`
	Command              *[]string      `hcl:"command,optional"`
	CommandRange         hcl.Range      `hcl:"command,attr_range"`
	After                *string        `hcl:"after,optional"`
	AfterRange           hcl.Range      `hcl:"after,attr_range"`
	MailboxMessages      *int           `hcl:"mailbox_messages,optional"`
	MailboxMessagesRange hcl.Range      `hcl:"mailbox_messages,attr_range"`
	MailboxSize          hcl.Expression `hcl:"mailbox_size,optional"`
	MailboxSizeRange     hcl.Range      `hcl:"mailbox_size,attr_range"`
	DefRange             hcl.Range      `hcl:",def_range"`
}

// destHCL is a deliver, postmaster or user deliver block.
type destHCL struct {
	Maildir               *string   `hcl:"maildir,optional"`
	MaildirRange          hcl.Range `hcl:"maildir,attr_range"`
	Folder                *string   `hcl:"folder,optional"`
	FolderRange           hcl.Range `hcl:"folder,attr_range"`
	MDA                   *[]string `hcl:"mda,optional"`
	MDARange              hcl.Range `hcl:"mda,attr_range"`
	MDATimeout            *string   `hcl:"mda_timeout,optional"`
	MDATimeoutRange       hcl.Range `hcl:"mda_timeout,attr_range"`
	MDAAllowStderr        *bool     `hcl:"mda_allow_stderr,optional"`
	MDAAllowStderrRange   hcl.Range `hcl:"mda_allow_stderr,attr_range"`
	MDATempExitCodes      *[]int    `hcl:"mda_temp_exit_codes,optional"`
	MDATempExitCodesRange hcl.Range `hcl:"mda_temp_exit_codes,attr_range"`
	SMTP                  *smtpHCL  `hcl:"smtp,block"`
	DefRange              hcl.Range `hcl:",def_range"`
}

type smtpHCL struct {
	Server       *string   `hcl:"server,optional"`
	ServerRange  hcl.Range `hcl:"server,attr_range"`
	LMTP         *bool     `hcl:"lmtp,optional"`
	LMTPRange    hcl.Range `hcl:"lmtp,attr_range"`
	Helo         *string   `hcl:"helo,optional"`
	HeloRange    hcl.Range `hcl:"helo,attr_range"`
	TLS          *string   `hcl:"tls,optional"`
	TLSRange     hcl.Range `hcl:"tls,attr_range"`
	CAFile       *string   `hcl:"ca_file,optional"`
	CAFileRange  hcl.Range `hcl:"ca_file,attr_range"`
	Sender       *string   `hcl:"sender,optional"`
	SenderRange  hcl.Range `hcl:"sender,attr_range"`
	Timeout      *string   `hcl:"timeout,optional"`
	TimeoutRange hcl.Range `hcl:"timeout,attr_range"`
	DefRange     hcl.Range `hcl:",def_range"`
}

type multidropHCL struct {
	LocalDomains         *[]string  `hcl:"local_domains,optional"`
	LocalDomainsRange    hcl.Range  `hcl:"local_domains,attr_range"`
	EnvelopeHeader       *string    `hcl:"envelope_header,optional"`
	EnvelopeHeaderRange  hcl.Range  `hcl:"envelope_header,attr_range"`
	EnvelopeCount        *int       `hcl:"envelope_count,optional"`
	EnvelopeCountRange   hcl.Range  `hcl:"envelope_count,attr_range"`
	ReceivedBy           *string    `hcl:"received_by,optional"`
	ReceivedByRange      hcl.Range  `hcl:"received_by,attr_range"`
	EnvelopeIgnore       *[]string  `hcl:"envelope_ignore,optional"`
	EnvelopeIgnoreRange  hcl.Range  `hcl:"envelope_ignore,attr_range"`
	FallbackHeaders      *[]string  `hcl:"fallback_headers,optional"`
	FallbackHeadersRange hcl.Range  `hcl:"fallback_headers,attr_range"`
	DetailDelimiter      *string    `hcl:"detail_delimiter,optional"`
	DetailDelimiterRange hcl.Range  `hcl:"detail_delimiter,attr_range"`
	CaseSensitive        *bool      `hcl:"case_sensitive,optional"`
	CaseSensitiveRange   hcl.Range  `hcl:"case_sensitive,attr_range"`
	AliasesFile          *string    `hcl:"aliases_file,optional"`
	AliasesFileRange     hcl.Range  `hcl:"aliases_file,attr_range"`
	SystemUsers          *bool      `hcl:"system_users,optional"`
	SystemUsersRange     hcl.Range  `hcl:"system_users,attr_range"`
	QVirtual             *string    `hcl:"qvirtual,optional"`
	QVirtualRange        hcl.Range  `hcl:"qvirtual,attr_range"`
	DedupeMessageID      *bool      `hcl:"dedupe_message_id,optional"`
	DedupeMessageIDRange hcl.Range  `hcl:"dedupe_message_id,attr_range"`
	Users                []*userHCL `hcl:"user,block"`
	LDAP                 *ldapHCL   `hcl:"ldap,block"`
	DefRange             hcl.Range  `hcl:",def_range"`
}

// ldapHCL is a multidrop block's directory (see ldap.go). The four
// password attributes are the account's, with the account's rules.
type ldapHCL struct {
	URL                    *string   `hcl:"url,optional"`
	URLRange               hcl.Range `hcl:"url,attr_range"`
	CAFile                 *string   `hcl:"ca_file,optional"`
	CAFileRange            hcl.Range `hcl:"ca_file,attr_range"`
	BindDN                 *string   `hcl:"bind_dn,optional"`
	BindDNRange            hcl.Range `hcl:"bind_dn,attr_range"`
	Password               *string   `hcl:"password,optional"`
	PasswordRange          hcl.Range `hcl:"password,attr_range"`
	PasswordFile           *string   `hcl:"password_file,optional"`
	PasswordFileRange      hcl.Range `hcl:"password_file,attr_range"`
	PasswordEnv            *string   `hcl:"password_env,optional"`
	PasswordEnvRange       hcl.Range `hcl:"password_env,attr_range"`
	PasswordCommand        *[]string `hcl:"password_command,optional"`
	PasswordCommandRange   hcl.Range `hcl:"password_command,attr_range"`
	BaseDN                 *string   `hcl:"base_dn,optional"`
	BaseDNRange            hcl.Range `hcl:"base_dn,attr_range"`
	Filter                 *string   `hcl:"filter,optional"`
	FilterRange            hcl.Range `hcl:"filter,attr_range"`
	UserAttribute          *string   `hcl:"user_attribute,optional"`
	UserAttributeRange     hcl.Range `hcl:"user_attribute,attr_range"`
	AddressAttributes      *[]string `hcl:"address_attributes,optional"`
	AddressAttributesRange hcl.Range `hcl:"address_attributes,attr_range"`
	Groups                 *bool     `hcl:"groups,optional"`
	GroupsRange            hcl.Range `hcl:"groups,attr_range"`
	GroupFilter            *string   `hcl:"group_filter,optional"`
	GroupFilterRange       hcl.Range `hcl:"group_filter,attr_range"`
	MemberAttribute        *string   `hcl:"member_attribute,optional"`
	MemberAttributeRange   hcl.Range `hcl:"member_attribute,attr_range"`
	Refresh                *string   `hcl:"refresh,optional"`
	RefreshRange           hcl.Range `hcl:"refresh,attr_range"`
	Grace                  *string   `hcl:"grace,optional"`
	GraceRange             hcl.Range `hcl:"grace,attr_range"`
	Timeout                *string   `hcl:"timeout,optional"`
	TimeoutRange           hcl.Range `hcl:"timeout,attr_range"`
	MaxEntries             *int      `hcl:"max_entries,optional"`
	MaxEntriesRange        hcl.Range `hcl:"max_entries,attr_range"`
	DefRange               hcl.Range `hcl:",def_range"`
}

type userHCL struct {
	Name           string     `hcl:"name,label"`
	NameRange      hcl.Range  `hcl:"name,label_range"`
	Addresses      *[]string  `hcl:"addresses,optional"`
	AddressesRange hcl.Range  `hcl:"addresses,attr_range"`
	Deliver        *destHCL   `hcl:"deliver,block"`
	Rules          []*ruleHCL `hcl:"rule,block"`
	DefRange       hcl.Range  `hcl:",def_range"`
}

// ruleHCL is a filing rule (see rules.go): one condition on a header
// field and one action.
type ruleHCL struct {
	Name               string    `hcl:"name,label"`
	NameRange          hcl.Range `hcl:"name,label_range"`
	Header             *string   `hcl:"header,optional"`
	HeaderRange        hcl.Range `hcl:"header,attr_range"`
	Equals             *string   `hcl:"equals,optional"`
	EqualsRange        hcl.Range `hcl:"equals,attr_range"`
	Contains           *string   `hcl:"contains,optional"`
	ContainsRange      hcl.Range `hcl:"contains,attr_range"`
	Matches            *string   `hcl:"matches,optional"`
	MatchesRange       hcl.Range `hcl:"matches,attr_range"`
	CaseSensitive      *bool     `hcl:"case_sensitive,optional"`
	CaseSensitiveRange hcl.Range `hcl:"case_sensitive,attr_range"`
	Folder             *string   `hcl:"folder,optional"`
	FolderRange        hcl.Range `hcl:"folder,attr_range"`
	Deliver            *destHCL  `hcl:"deliver,block"`
	Postmaster         *string   `hcl:"postmaster,optional"`
	PostmasterRange    hcl.Range `hcl:"postmaster,attr_range"`
	Discard            *bool     `hcl:"discard,optional"`
	DiscardRange       hcl.Range `hcl:"discard,attr_range"`
	DefRange           hcl.Range `hcl:",def_range"`
}

// filterHCL is a spam or virus filter (see filters.go): a milter or a
// command, with its policies.
type filterHCL struct {
	Name                 string    `hcl:"name,label"`
	NameRange            hcl.Range `hcl:"name,label_range"`
	Milter               *string   `hcl:"milter,optional"`
	MilterRange          hcl.Range `hcl:"milter,attr_range"`
	Command              *[]string `hcl:"command,optional"`
	CommandRange         hcl.Range `hcl:"command,attr_range"`
	Timeout              *string   `hcl:"timeout,optional"`
	TimeoutRange         hcl.Range `hcl:"timeout,attr_range"`
	TempExitCodes        *[]int    `hcl:"temp_exit_codes,optional"`
	TempExitCodesRange   hcl.Range `hcl:"temp_exit_codes,attr_range"`
	RejectExitCodes      *[]int    `hcl:"reject_exit_codes,optional"`
	RejectExitCodesRange hcl.Range `hcl:"reject_exit_codes,attr_range"`
	OnUnavailable        *string   `hcl:"on_unavailable,optional"`
	OnUnavailableRange   hcl.Range `hcl:"on_unavailable,attr_range"`
	OnReject             *string   `hcl:"on_reject,optional"`
	OnRejectRange        hcl.Range `hcl:"on_reject,attr_range"`
	DefRange             hcl.Range `hcl:",def_range"`
}

// trustedHCL says which Received: field a filter is told about.
type trustedHCL struct {
	By            *string   `hcl:"by,optional"`
	ByRange       hcl.Range `hcl:"by,attr_range"`
	Position      *int      `hcl:"position,optional"`
	PositionRange hcl.Range `hcl:"position,attr_range"`
	DefRange      hcl.Range `hcl:",def_range"`
}

// fieldTag splits a field's hcl tag into the name and the kind (attr,
// optional, block, label, remain, attr_range, ...), as gohcl reads it.
func fieldTag(f reflect.StructField) (name, kind string) {
	tag, ok := f.Tag.Lookup("hcl")
	if !ok {
		return "", ""
	}
	name, kind, found := strings.Cut(tag, ",")
	if !found {
		kind = "attr"
	}
	return name, kind
}

// attrField is one attribute of a schema struct: the indexes of its value
// field and of its attr_range twin (-1 if it has none).
type attrField struct {
	name     string
	val, rng int
}

// attrFields lists the attributes of the schema struct t.
func attrFields(t reflect.Type) []attrField {
	var out []attrField
	ranges := map[string]int{}
	for i := range t.NumField() {
		switch name, kind := fieldTag(t.Field(i)); kind {
		case "attr", "optional":
			out = append(out, attrField{name: name, val: i, rng: -1})
		case "attr_range":
			ranges[name] = i
		}
	}
	for i, a := range out {
		if r, ok := ranges[a.name]; ok {
			out[i].rng = r
		}
	}
	return out
}

// blockElem is the struct type that a block field decodes into, and
// whether the field takes at most one block.
func blockElem(f reflect.StructField) (t reflect.Type, once bool) {
	t, once = f.Type, f.Type.Kind() != reflect.Slice
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t, once
}

// walkSchema calls fn for every attribute and block name of the schema
// struct t and of the blocks nested in it, with the struct that holds it.
func walkSchema(t reflect.Type, fn func(owner reflect.Type, name, kind string)) {
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			name, kind := fieldTag(t.Field(i))
			switch kind {
			case "attr", "optional":
				fn(t, name, kind)
			case "block":
				fn(t, name, kind)
				et, _ := blockElem(t.Field(i))
				walk(et)
			case "remain":
				walk(t.Field(i).Type)
			}
		}
	}
	walk(t)
}
