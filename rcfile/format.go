package rcfile

import (
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/popfetch/popfetch/deliver/rules"
	"github.com/zclconf/go-cty/cty"
)

// QuotePath returns p as it is when it prints as one plain line (valid
// UTF-8 of printable characters and spaces), else quoted as a Go string
// literal: a path printed in a comment ("popfetch check") or a message
// can then neither end the line, so that the rest of it reads as
// settings, nor carry terminal control sequences.
func QuotePath(p string) string {
	for _, r := range p {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(p)
		}
	}
	return p
}

// Format writes the effective configuration: every account with every
// default and inherited value filled in, in HCL syntax, for "popfetch
// check". Passwords are shown only by their source (Password.String).
// The output parses again with Parse, though paths are then absolute.
// hclwrite quotes the values (escaping the template introducers ${ and
// %{, which HCL would otherwise evaluate when the output is read back)
// and lays the file out as hclfmt does: "=" aligned, two-space indents.
func (c *Config) Format(w io.Writer) error {
	f := hclwrite.NewEmptyFile()
	top := f.Body()
	if c.Path != "" {
		top.AppendUnstructuredTokens(hclwrite.Tokens{{
			Type:  hclsyntax.TokenComment,
			Bytes: []byte("# Effective settings of " + QuotePath(c.Path) + ", with every default applied.\n"),
		}})
	}
	top.SetAttributeValue("state_dir", cty.StringVal(c.StateDir))
	top.SetAttributeValue("max_parallel", cty.NumberIntVal(int64(c.MaxParallel)))
	top.SetAttributeValue("per_server", cty.NumberIntVal(int64(c.PerServer)))
	if c.Shard.Count > 0 {
		top.SetAttributeValue("shard", cty.StringVal(c.Shard.String()))
	}
	if c.MetricsListen != "" {
		top.SetAttributeValue("metrics_listen", cty.StringVal(c.MetricsListen))
	}
	if c.Alert != nil {
		formatAlert(block(top, "alert"), c.Alert, 0)
	}
	for _, a := range c.Accounts {
		n := block(top, "account", a.Name)
		n.SetAttributeValue("server", cty.StringVal(a.Server))
		n.SetAttributeValue("port", cty.NumberIntVal(int64(a.Port)))
		n.SetAttributeValue("tls", cty.StringVal(string(a.TLS)))
		n.SetAttributeValue("ca_file", cty.StringVal(a.CAFile))
		n.SetAttributeValue("tls_fingerprint", cty.StringVal(a.Fingerprint))
		if a.Fingerprint != "" {
			n.SetAttributeValue("tls_check_name", cty.BoolVal(a.CheckName))
		}
		n.SetAttributeValue("username", cty.StringVal(a.Username))
		if k, v := a.Password.setting(); k != "" {
			n.SetAttributeValue(k, v)
		}
		if a.Auth != AuthAuto && a.Auth != "" {
			n.SetAttributeValue("auth", cty.StringVal(string(a.Auth)))
		}
		n.SetAttributeValue("keep", cty.BoolVal(a.Keep))
		if a.DeleteAfter > 0 {
			n.SetAttributeValue("delete_after", cty.StringVal(fmtDays(a.DeleteAfter)))
		}
		n.SetAttributeValue("fetch_all", cty.BoolVal(a.FetchAll))
		if a.QuietMessages {
			n.SetAttributeValue("log_messages", cty.False)
		}
		n.SetAttributeValue("limit", cty.NumberIntVal(a.Limit))
		n.SetAttributeValue("fetch_limit", cty.NumberIntVal(int64(a.FetchLimit)))
		n.SetAttributeValue("timeout", cty.StringVal(fmtDuration(a.Timeout)))
		n.SetAttributeValue("interval", cty.StringVal(fmtDuration(a.Interval)))
		n.SetAttributeValue("state_dir", cty.StringVal(a.StateDir))
		if a.MailboxID != "" {
			n.SetAttributeValue("mailbox_id", cty.StringVal(a.MailboxID))
		}
		formatOAuth2(n, a)
		formatDest(block(n, "deliver"), &a.Deliver)
		if a.Postmaster != nil {
			formatDest(block(n, "postmaster"), a.Postmaster)
		}
		formatRules(n, a.Rules)
		formatFilters(n, a)
		if al := c.AccountAlerts[a.Name]; al != nil && al != c.Alert {
			formatAlert(block(n, "alert"), al, a.Interval)
		}
		if m := a.Multidrop; m != nil {
			mn := block(n, "multidrop")
			mn.SetAttributeValue("local_domains", stringList(m.LocalDomains))
			mn.SetAttributeValue("envelope_header", cty.StringVal(m.EnvelopeHeader))
			mn.SetAttributeValue("envelope_count", cty.NumberIntVal(int64(m.EnvelopeCount)))
			mn.SetAttributeValue("received_by", cty.StringVal(m.ReceivedBy))
			mn.SetAttributeValue("envelope_ignore", stringList(m.EnvelopeIgnore))
			mn.SetAttributeValue("fallback_headers", stringList(m.FallbackHeaders))
			mn.SetAttributeValue("detail_delimiter", cty.StringVal(m.DetailDelimiter))
			mn.SetAttributeValue("case_sensitive", cty.BoolVal(m.CaseSensitive))
			mn.SetAttributeValue("aliases_file", cty.StringVal(m.AliasesFile))
			mn.SetAttributeValue("system_users", cty.BoolVal(m.SystemUsers))
			mn.SetAttributeValue("qvirtual", cty.StringVal(m.QVirtual))
			mn.SetAttributeValue("dedupe_message_id", cty.BoolVal(m.DedupeMessageID))
			if m.LDAP != nil {
				formatLDAP(block(mn, "ldap"), m.LDAP)
			}
			for _, u := range m.Users {
				un := block(mn, "user", u.Name)
				un.SetAttributeValue("addresses", stringList(u.Addresses))
				if u.Deliver != nil {
					formatDest(block(un, "deliver"), u.Deliver)
				}
				formatRules(un, u.Rules)
			}
		}
	}
	_, err := w.Write(hclwrite.Format(f.Bytes()))
	return err
}

// formatOAuth2 prints the account's OAuth2 token source, the client
// secret only by its source.
func formatOAuth2(n *hclwrite.Body, a *Account) {
	if a.OAuth2TokenCommand != nil {
		n.SetAttributeValue("oauth2_token_command", stringList(a.OAuth2TokenCommand))
	}
	o := a.OAuth2
	if o == nil {
		return
	}
	b := block(n, "oauth2")
	b.SetAttributeValue("provider", cty.StringVal(o.Provider))
	b.SetAttributeValue("client_id", cty.StringVal(o.ClientID))
	switch {
	case o.ClientSecretFile != "":
		b.SetAttributeValue("client_secret_file", cty.StringVal(o.ClientSecretFile))
	case o.ClientSecret != "":
		b.SetAttributeValue("client_secret", cty.StringVal("********"))
	}
	if o.Tenant != "" {
		b.SetAttributeValue("tenant", cty.StringVal(o.Tenant))
	}
	b.SetAttributeValue("scopes", stringList(o.Scopes))
	b.SetAttributeValue("flow", cty.StringVal(o.Flow))
	if o.Provider == ProviderGeneric {
		b.SetAttributeValue("auth_url", cty.StringVal(o.AuthURL))
		b.SetAttributeValue("token_url", cty.StringVal(o.TokenURL))
		b.SetAttributeValue("device_url", cty.StringVal(o.DeviceURL))
	}
}

// formatLDAP prints a multidrop ldap block, the bind password only by
// its source (Password.String), and the group settings only with groups
// (the file may not set them without).
func formatLDAP(n *hclwrite.Body, l *LDAP) {
	n.SetAttributeValue("url", cty.StringVal(l.URL))
	n.SetAttributeValue("ca_file", cty.StringVal(l.CAFile))
	if l.BindDN != "" {
		n.SetAttributeValue("bind_dn", cty.StringVal(l.BindDN))
	}
	if k, v := l.Password.setting(); k != "" {
		n.SetAttributeValue(k, v)
	}
	n.SetAttributeValue("base_dn", cty.StringVal(l.BaseDN))
	n.SetAttributeValue("filter", cty.StringVal(l.Filter))
	n.SetAttributeValue("user_attribute", cty.StringVal(l.UserAttribute))
	n.SetAttributeValue("address_attributes", stringList(l.AddressAttributes))
	n.SetAttributeValue("groups", cty.BoolVal(l.Groups))
	if l.Groups {
		n.SetAttributeValue("group_filter", cty.StringVal(l.GroupFilter))
		n.SetAttributeValue("member_attribute", cty.StringVal(l.MemberAttribute))
	}
	n.SetAttributeValue("refresh", cty.StringVal(fmtDuration(l.Refresh)))
	n.SetAttributeValue("grace", cty.StringVal(fmtDuration(l.Grace)))
	n.SetAttributeValue("timeout", cty.StringVal(fmtDuration(l.Timeout)))
	n.SetAttributeValue("max_entries", cty.NumberIntVal(int64(l.MaxEntries)))
}

// block appends a nested block after a blank line.
func block(parent *hclwrite.Body, typeName string, labels ...string) *hclwrite.Body {
	parent.AppendNewline()
	return parent.AppendNewBlock(typeName, labels).Body()
}

// formatRules prints filing rules in order.
func formatRules(n *hclwrite.Body, rs []Rule) {
	for _, r := range rs {
		sp := r.Spec
		rn := block(n, "rule", sp.Name)
		rn.SetAttributeValue("header", cty.StringVal(sp.Field))
		rn.SetAttributeValue(sp.Op.String(), cty.StringVal(sp.Value))
		if sp.Op != rules.Matches {
			rn.SetAttributeValue("case_sensitive", cty.BoolVal(sp.CaseSensitive))
		}
		switch a := sp.Action; a.Kind {
		case rules.Folder:
			rn.SetAttributeValue("folder", cty.StringVal(a.Folder))
		case rules.Postmaster:
			rn.SetAttributeValue("postmaster", cty.StringVal(a.Reason))
		case rules.Discard:
			rn.SetAttributeValue("discard", cty.True)
		case rules.Deliver:
			if r.Deliver != nil {
				formatDest(block(rn, "deliver"), r.Deliver)
			}
		}
	}
}

// formatFilters prints the trusted_received block and the filters, in
// order, with every default spelt out.
func formatFilters(n *hclwrite.Body, a *Account) {
	if len(a.Filters) == 0 && a.TrustedReceived == (TrustedReceived{Position: 1}) {
		return
	}
	tn := block(n, "trusted_received")
	if a.TrustedReceived.By != "" {
		tn.SetAttributeValue("by", cty.StringVal(a.TrustedReceived.By))
	} else {
		tn.SetAttributeValue("position", cty.NumberIntVal(int64(a.TrustedReceived.Position)))
	}
	for _, f := range a.Filters {
		fn := block(n, "filter", f.Name)
		if f.Milter != "" {
			fn.SetAttributeValue("milter", cty.StringVal(f.Milter))
		} else {
			fn.SetAttributeValue("command", stringList(f.Command))
		}
		fn.SetAttributeValue("timeout", cty.StringVal(fmtDuration(f.Timeout)))
		if f.Milter == "" {
			fn.SetAttributeValue("temp_exit_codes", intList(f.TempExitCodes))
			fn.SetAttributeValue("reject_exit_codes", intList(f.RejectExitCodes))
		}
		fn.SetAttributeValue("on_unavailable", cty.StringVal(f.OnUnavailable))
		fn.SetAttributeValue("on_reject", cty.StringVal(f.OnReject))
	}
}

func formatDest(n *hclwrite.Body, d *Destination) {
	switch {
	case d.Maildir != "":
		n.SetAttributeValue("maildir", cty.StringVal(d.Maildir))
		if d.Folder != "" {
			n.SetAttributeValue("folder", cty.StringVal(d.Folder))
		}
	case d.MDA != nil:
		n.SetAttributeValue("mda", stringList(d.MDA))
		n.SetAttributeValue("mda_timeout", cty.StringVal(fmtDuration(d.MDATimeout)))
		n.SetAttributeValue("mda_allow_stderr", cty.BoolVal(d.MDAAllowStderr))
		ints := make([]cty.Value, len(d.MDATempExitCodes))
		for i, c := range d.MDATempExitCodes {
			ints[i] = cty.NumberIntVal(int64(c))
		}
		n.SetAttributeValue("mda_temp_exit_codes", list(cty.Number, ints))
	case d.SMTP != nil:
		s := block(n, "smtp")
		s.SetAttributeValue("server", cty.StringVal(d.SMTP.Server))
		s.SetAttributeValue("lmtp", cty.BoolVal(d.SMTP.LMTP))
		s.SetAttributeValue("helo", cty.StringVal(d.SMTP.Helo))
		s.SetAttributeValue("tls", cty.StringVal(string(d.SMTP.TLS)))
		s.SetAttributeValue("ca_file", cty.StringVal(d.SMTP.CAFile))
		s.SetAttributeValue("sender", cty.StringVal(d.SMTP.Sender))
		s.SetAttributeValue("timeout", cty.StringVal(fmtDuration(d.SMTP.Timeout)))
	}
}

// formatAlert writes an alert block; with an account's interval, after
// is the effective one (DefaultAlertAfter when unset).
func formatAlert(n *hclwrite.Body, al *Alert, interval time.Duration) {
	if al.Maildir != "" {
		n.SetAttributeValue("maildir", cty.StringVal(al.Maildir))
	}
	if al.SMTP != nil {
		formatDest(n, &Destination{SMTP: al.SMTP})
	}
	if al.To != "" {
		n.SetAttributeValue("to", cty.StringVal(al.To))
	}
	if al.Command != nil {
		n.SetAttributeValue("command", stringList(al.Command))
	}
	switch {
	case al.After > 0:
		n.SetAttributeValue("after", cty.StringVal(fmtDuration(al.After)))
	case interval > 0:
		n.SetAttributeValue("after", cty.StringVal(fmtDuration(DefaultAlertAfter(interval))))
	}
	n.SetAttributeValue("mailbox_messages", cty.NumberIntVal(int64(al.MailboxMessages)))
	n.SetAttributeValue("mailbox_size", cty.NumberIntVal(al.MailboxSize))
}

// stringList is l as an HCL list; nil and empty are both [].
func stringList(l []string) cty.Value {
	vs := make([]cty.Value, len(l))
	for i, s := range l {
		vs[i] = cty.StringVal(s)
	}
	return list(cty.String, vs)
}

func list(ty cty.Type, vs []cty.Value) cty.Value {
	if len(vs) == 0 {
		return cty.ListValEmpty(ty)
	}
	return cty.ListVal(vs)
}

// hclValue is v in HCL syntax, as Format prints it.
func hclValue(v cty.Value) string {
	return strings.TrimSpace(string(hclwrite.TokensForValue(v).Bytes()))
}

func intList(l []int) cty.Value {
	vs := make([]cty.Value, len(l))
	for i, c := range l {
		vs[i] = cty.NumberIntVal(int64(c))
	}
	return list(cty.Number, vs)
}
