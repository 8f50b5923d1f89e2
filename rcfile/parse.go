package rcfile

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Parse decodes and validates an rc file held in memory. filename appears
// in diagnostics and is the base for relative paths; Parse does not read
// it. It consults the environment ($VAR, ~, env(), the default state_dir),
// but never the file system, so tests and the fuzzer can call it freely.
//
// Every problem in the file is reported in one pass. The Config is nil
// whenever the diagnostics hold an error; warnings come with a Config.
// Diagnostics are sorted by position, and hold no secret (redactDiags).
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	return parseAs(src, filename, os.Geteuid())
}

// parseAs is Parse for a process whose effective user ID is euid, which
// picks the default state_dir; tests pin it instead of reading the real one.
func parseAs(src []byte, filename string, euid int) (*Config, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		// Without a complete syntax tree every further message would be
		// a guess; HCL's own syntax errors are precise enough.
		return nil, redactDiags(src, sortDiags(diags))
	}
	p := newParser(filename, euid)
	var top fileHCL
	p.decode(f.Body, &top)
	cfg := p.build(&top, f.Body)
	diags = append(diags, p.diags...)
	diags = redactDiags(src, sortDiags(diags))
	if diags.HasErrors() {
		return nil, diags
	}
	cfg.Path = filename
	return cfg, diags
}

// parser carries what every validation step needs and collects the
// diagnostics, so that each check can report and carry on.
type parser struct {
	filename string
	dir      string // absolute directory of filename: the base of relative paths
	ctx      *hcl.EvalContext
	diags    hcl.Diagnostics
	euid     int // the process's effective user ID: picks the default state_dir
	// decodeErrs are the ranges gohcl already complained about; later
	// checks stay quiet about them instead of piling on a second message.
	decodeErrs []hcl.Range
}

func newParser(filename string, euid int) *parser {
	dir := filepath.Dir(filename)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &parser{
		filename: filename,
		dir:      dir,
		euid:     euid,
		ctx: &hcl.EvalContext{
			Functions: map[string]function.Function{"env": envFunc},
		},
	}
}

// envFunc is env("NAME") or env("NAME", "default"). An unset variable
// without a default is an error rather than "", because an empty ca_file
// or path silently means something else.
var envFunc = function.New(&function.Spec{
	Description: "Returns the value of an environment variable.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.String},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if len(args) > 2 {
			return cty.NilVal, fmt.Errorf("env takes a name and at most one default value")
		}
		name := args[0].AsString()
		if v, ok := os.LookupEnv(name); ok {
			return cty.StringVal(v), nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return cty.NilVal, fmt.Errorf("environment variable %s is not set; set it, or give a default: env(%q, \"...\")", name, name)
	},
})

func (p *parser) decode(body hcl.Body, v any) {
	ds := decodeBody(body, p.ctx, v)
	for _, d := range ds {
		if d.Severity == hcl.DiagError && d.Subject != nil {
			p.decodeErrs = append(p.decodeErrs, *d.Subject)
		}
	}
	p.diags = append(p.diags, ds...)
}

// reported says whether gohcl already reported an error inside rng.
func (p *parser) reported(rng hcl.Range) bool {
	for _, r := range p.decodeErrs {
		if within(r, rng) {
			return true
		}
	}
	return false
}

func (p *parser) errorf(rng hcl.Range, summary, format string, args ...any) {
	p.add(hcl.DiagError, rng, summary, fmt.Sprintf(format, args...))
}

func (p *parser) warnf(rng hcl.Range, summary, format string, args ...any) {
	p.add(hcl.DiagWarning, rng, summary, fmt.Sprintf(format, args...))
}

func (p *parser) add(sev hcl.DiagnosticSeverity, rng hcl.Range, summary, detail string) {
	if rng.Filename == "" {
		// Every diagnostic must carry file:line:col; fall back to the
		// start of the file rather than printing no position.
		rng = hcl.Range{Filename: p.filename, Start: hcl.InitialPos, End: hcl.InitialPos}
	}
	p.diags = append(p.diags, &hcl.Diagnostic{Severity: sev, Summary: summary, Detail: detail, Subject: rng.Ptr()})
}

func isSet(r hcl.Range) bool { return r != (hcl.Range{}) }

// build turns the decoded top level into a Config with every default
// applied. It returns a Config even after errors; Parse discards it.
func (p *parser) build(top *fileHCL, body hcl.Body) *Config {
	cfg := &Config{MaxParallel: 8, PerServer: 2}
	if top.StateDir != nil {
		cfg.StateDir, _ = p.path(*top.StateDir, top.StateDirRange)
	} else {
		dir, err := defaultStateDir(p.euid)
		if err != nil {
			p.errorf(body.MissingItemRange(), "No state directory",
				"%v; set state_dir at the top of the file.", err)
		}
		cfg.StateDir = dir
	}
	if top.MaxParallel != nil {
		cfg.MaxParallel = *top.MaxParallel
		if cfg.MaxParallel < 1 || cfg.MaxParallel > 1000 {
			p.errorf(top.MaxParallelRange, "Invalid max_parallel",
				"max_parallel must be between 1 and 1000, not %d.", cfg.MaxParallel)
		}
	}
	if top.PerServer != nil {
		cfg.PerServer = *top.PerServer
		if cfg.PerServer < 1 {
			p.errorf(top.PerServerRange, "Invalid per_server",
				"per_server must be at least 1, not %d.", cfg.PerServer)
		}
	}

	if top.Shard != nil {
		sh, err := ParseShard(*top.Shard)
		if err != nil {
			p.errorf(top.ShardRange, "Invalid shard", "%v; the first of N replicas is 0/N.", err)
		}
		cfg.Shard, cfg.ShardRange = sh, top.ShardRange
	}

	if top.MetricsListen != nil {
		if err := CheckMetricsListen(*top.MetricsListen); err != nil {
			p.errorf(top.MetricsRange, "Invalid metrics_listen", "%v.", err)
		}
		cfg.MetricsListen = *top.MetricsListen
	}

	var defaults settingsHCL
	if top.Defaults != nil {
		defaults = top.Defaults.Settings
		if defaults.MailboxID != nil {
			p.errorf(defaults.MailboxIDRange, "mailbox_id in defaults",
				"mailbox_id names one mailbox; set it in the account block it belongs to, not in defaults.")
			defaults.MailboxID = nil
		}
	}

	cfg.Alert = p.alert(top.Alert)
	// The defaults block's alert block is built once, not once per
	// account that inherits it: a mistake in it is one diagnostic.
	defAlert := p.alert(defaults.Alert)

	if len(top.Accounts) == 0 {
		p.errorf(body.MissingItemRange(), "No accounts",
			`The file declares no account; add at least one block such as account "work" { ... }.`)
	}
	seen := map[string]hcl.Range{}
	for _, ah := range top.Accounts {
		if prev, ok := seen[ah.Name]; ok {
			p.errorf(ah.NameRange, "Duplicate account",
				"Account %q is already declared at %s; account names must be unique.", ah.Name, prev)
		} else {
			seen[ah.Name] = ah.DefRange
		}
		s := ah.Settings
		inherit(&s, &defaults)
		if a := p.account(ah, &s, cfg.StateDir); a != nil {
			cfg.Accounts = append(cfg.Accounts, a)
			al := defAlert
			if ah.Settings.Alert != nil {
				al = p.alert(ah.Settings.Alert)
			}
			if al != nil {
				if cfg.AccountAlerts == nil {
					cfg.AccountAlerts = map[string]*Alert{}
				}
				cfg.AccountAlerts[a.Name] = al
			}
		}
	}
	p.mailboxes(cfg.Accounts)
	return cfg
}

// inherit fills every attribute and block that acct does not set from
// defs, together with its range, so that a bad inherited value is
// reported at the defaults block where it was written. Blocks are taken
// whole: a deliver block in an account replaces the default one
// entirely, which is easier to reason about than a field-wise merge of
// mutually exclusive targets. For the same reason the four password
// attributes are one group: an account that sets any of them inherits
// none, so password_env in an account simply replaces a default
// password_file instead of clashing with it.
func inherit(acct, defs *settingsHCL) {
	// The OAuth2 token sources belong to the same group: an account
	// that says how it signs in (a password for one server, OAuth2 for
	// another) inherits no credential from defaults.
	if isSet(acct.PasswordRange) || isSet(acct.PasswordFileRange) || isSet(acct.PasswordEnvRange) || isSet(acct.PasswordCommandRange) ||
		acct.OAuth2 != nil || isSet(acct.OAuth2TokenCommandRange) {
		d := *defs
		d.Password, d.PasswordRange = nil, hcl.Range{}
		d.PasswordFile, d.PasswordFileRange = nil, hcl.Range{}
		d.PasswordEnv, d.PasswordEnvRange = nil, hcl.Range{}
		d.PasswordCommand, d.PasswordCommandRange = nil, hcl.Range{}
		d.OAuth2 = nil
		d.OAuth2TokenCommand, d.OAuth2TokenCommandRange = nil, hcl.Range{}
		defs = &d
	}
	// ca_file and tls_fingerprint are one group too: they are two ways to
	// trust a server (a pin replaces the chain check), so an account that
	// pins a key does not get the default ca_file, nor the default pin an
	// account that names its CA.
	if isSet(acct.CAFileRange) || isSet(acct.FingerprintRange) {
		d := *defs
		d.CAFile, d.CAFileRange = nil, hcl.Range{}
		d.Fingerprint, d.FingerprintRange = nil, hcl.Range{}
		defs = &d
	}
	av := reflect.ValueOf(acct).Elem()
	dv := reflect.ValueOf(defs).Elem()
	t := av.Type()
	for _, a := range attrFields(t) { // each has a range (TestSchemaRanges)
		if !isSet(av.Field(a.rng).Interface().(hcl.Range)) {
			av.Field(a.val).Set(dv.Field(a.val))
			av.Field(a.rng).Set(dv.Field(a.rng))
		}
	}
	for i := range t.NumField() {
		if _, kind := fieldTag(t.Field(i)); kind == "block" && av.Field(i).IsNil() {
			av.Field(i).Set(dv.Field(i))
		}
	}
}

// sortDiags orders diagnostics by file position so that the output reads
// top to bottom; gohcl reports attributes in map order.
func sortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
	return diags
}
