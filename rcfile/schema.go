package rcfile

import "github.com/hashicorp/hcl/v2"

// The private structs below are the rc file's schema, in gohcl's tag
// language (decoded by decode.go, see there why not by gohcl itself).
// Attributes are pointers so that "absent" differs from the zero value:
// that is what lets an account inherit from the defaults block, and lets
// fallback_headers = [] mean "off" while an absent one means "default".
// Each attribute has an attr_range twin so that semantic errors found
// after decoding still point at file:line:col. doc_test.go walks these
// tags, so every name here must be documented in man/popfetch.hcl.5.

// fileHCL is the top level of the rc file.
type fileHCL struct {
	StateDir         *string        `hcl:"state_dir,optional"`
	StateDirRange    hcl.Range      `hcl:"state_dir,attr_range"`
	MaxParallel      *int           `hcl:"max_parallel,optional"`
	MaxParallelRange hcl.Range      `hcl:"max_parallel,attr_range"`
	PerServer        *int           `hcl:"per_server,optional"`
	PerServerRange   hcl.Range      `hcl:"per_server,attr_range"`
	Defaults         []*defaultsHCL `hcl:"defaults,block"`
	Accounts         []*accountHCL  `hcl:"account,block"`
}

// defaultsHCL and accountHCL keep their bodies undecoded: both decode the
// same settingsHCL, which gohcl cannot express for a labelled and an
// unlabelled block in one struct.
type defaultsHCL struct {
	Body     hcl.Body  `hcl:",remain"`
	DefRange hcl.Range `hcl:",def_range"`
}

type accountHCL struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	Body      hcl.Body  `hcl:",remain"`
	DefRange  hcl.Range `hcl:",def_range"`
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
	Keep                 *bool     `hcl:"keep,optional"`
	KeepRange            hcl.Range `hcl:"keep,attr_range"`
	FetchAll             *bool     `hcl:"fetch_all,optional"`
	FetchAllRange        hcl.Range `hcl:"fetch_all,attr_range"`
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
}

// destHCL is a deliver, postmaster or user deliver block.
type destHCL struct {
	Maildir               *string   `hcl:"maildir,optional"`
	MaildirRange          hcl.Range `hcl:"maildir,attr_range"`
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
	AliasesFile          *string    `hcl:"aliases_file,optional"`
	AliasesFileRange     hcl.Range  `hcl:"aliases_file,attr_range"`
	SystemUsers          *bool      `hcl:"system_users,optional"`
	QVirtual             *string    `hcl:"qvirtual,optional"`
	QVirtualRange        hcl.Range  `hcl:"qvirtual,attr_range"`
	DedupeMessageID      *bool      `hcl:"dedupe_message_id,optional"`
	Users                []*userHCL `hcl:"user,block"`
	DefRange             hcl.Range  `hcl:",def_range"`
}

type userHCL struct {
	Name           string    `hcl:"name,label"`
	NameRange      hcl.Range `hcl:"name,label_range"`
	Addresses      *[]string `hcl:"addresses,optional"`
	AddressesRange hcl.Range `hcl:"addresses,attr_range"`
	Deliver        *destHCL  `hcl:"deliver,block"`
	DefRange       hcl.Range `hcl:",def_range"`
}
