package rcfile

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
)

// ignorePositions compares Configs by meaning: where a setting was
// written differs between a file and its Format output, and an absent
// list (nil) and an empty one mean the same once defaults are applied.
var ignorePositions = cmp.Options{cmpopts.IgnoreTypes(hcl.Range{}), cmpopts.EquateEmpty()}

// roundTripSrc sets every kind of value Format prints, with strings that
// need escaping: quotes, backslashes, the template introducers ${ and %{,
// control and non-ASCII characters.
const roundTripSrc = `
state_dir    = "/var/lib/pop \"fetch\""
max_parallel = 3
per_server   = 1

defaults {
  password = "s3cr3t-\"$${x}\""
}

account "quoting" {
  server          = "pop.example.com"
  tls             = "starttls"
  port            = 1110
  ca_file         = "/etc/ssl/a\\b/%%{x}.pem"
  username        = "joe$${x}%%{y}\t\u00e9\u00a0\u2028"
  keep            = true
  limit           = "10MB"
  fetch_limit     = 7
  timeout         = "90s"
  interval        = "1h30m"
  mailbox_id      = "tunnel_1"
  deliver {
    mda                 = ["/usr/bin/procmail", "-a", "$ % \"q\" \\", "{user}"]
    mda_timeout         = "2m"
    mda_allow_stderr    = true
    mda_temp_exit_codes = [75, 73]
  }
  postmaster {
    smtp {
      server  = "[::1]:24"
      lmtp    = true
      helo    = "mx.example.com"
      tls     = "starttls"
      sender  = "bounce+\"x\"@example.com"
      timeout = "1m"
    }
  }
}

account "multi" {
  server           = "pop.example.org"
  username         = "all"
  password_command = ["/usr/bin/pass", "show", "mail \"box\""]
  deliver {
    maildir = "/var/vmail/{domain}/{user}"
  }
  multidrop {
    local_domains     = ["example.org", "*.bücher.example"]
    envelope_header   = "Received"
    received_by       = "mx.provider.example"
    envelope_count    = 2
    envelope_ignore   = ["all@example.org"]
    fallback_headers  = []
    detail_delimiter  = "-"
    case_sensitive    = true
    qvirtual          = "example.org-"
    dedupe_message_id = true
    user "ann" {
      addresses = ["ann", "a.smith@example.org"]
      deliver {
        mda = ["/usr/bin/deliver", "-d", "{address}"]
      }
    }
    user "bob" {}
    ldap {
      url                = "ldap://[::1]:3890"
      ca_file            = "/etc/ssl/ldap \"ca\".pem"
      bind_dn            = "cn=pop\\, \\\"fetch\\\",dc=example,dc=org"
      password_env       = "LDAP_PW"
      base_dn            = "dc=example,dc=org"
      filter             = "(&(cn=$${x}%%{y}\\2a)(sn=é*))"
      user_attribute     = "uid"
      address_attributes = ["mail", "mailAlternateAddress"]
      groups             = true
      member_attribute   = "uniqueMember"
      grace              = "0"
      refresh            = "90m"
      max_entries        = 5
    }
  }
}
`

// TestFormatRoundTrip: what Format prints ("popfetch check") matches
// testdata/format_roundtrip.golden, is read back by Parse as the same
// Config (the inline password as the mask Format printed), and Format of
// that prints the same text.
func TestFormatRoundTrip(t *testing.T) {
	fixedEnv(t)
	cfg, diags := parseAs([]byte(roundTripSrc), "/etc/popfetch/rt.hcl", testEUID)
	if diags.HasErrors() {
		t.Fatal(string(render(t, diags)))
	}
	var out bytes.Buffer
	if err := cfg.Format(&out); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/format_roundtrip.golden", out.Bytes())
	if strings.Contains(out.String(), "s3cr3t") || !regexp.MustCompile(`\n +password += "\*{8}"\n`).MatchString(out.String()) {
		t.Errorf("Format does not mask the inline password:\n%s", out.String())
	}
	cfg2, diags := parseAs(out.Bytes(), "/etc/popfetch/rt.hcl", testEUID)
	if diags.HasErrors() {
		t.Fatalf("Format output does not parse:\n%s\n%s", render(t, diags), out.String())
	}
	want := *cfg
	want.Accounts = append([]*Account(nil), cfg.Accounts...)
	masked := *want.Accounts[0]
	masked.Password.Inline = "********"
	want.Accounts[0] = &masked
	if diff := cmp.Diff(&want, cfg2, ignorePositions); diff != "" {
		t.Errorf("Format output parses to another Config (-want +got):\n%s\n%s", diff, out.String())
	}
	var again bytes.Buffer
	if err := cfg2.Format(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != out.String() {
		t.Errorf("Format is not a fixed point:\n%s\n---\n%s", out.String(), again.String())
	}
}
