package rcfile

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestSchemaRanges: every attribute of every schema struct has an
// attr_range twin. inherit relies on it to tell an absent attribute from
// one set to null, and decodeBody to find the attribute a type error
// belongs to.
func TestSchemaRanges(t *testing.T) {
	t.Parallel()
	n := 0
	walkSchema(reflect.TypeFor[fileHCL](), func(owner reflect.Type, name, kind string) {
		if kind == "block" {
			return
		}
		n++
		for _, a := range attrFields(owner) {
			if a.name == name && (a.rng < 0 || owner.Field(a.rng).Type != reflect.TypeFor[hcl.Range]()) {
				t.Errorf("%s.%s has no attr_range twin", owner.Name(), name)
			}
		}
	})
	if n < 40 {
		t.Fatalf("walked %d attributes; is walkSchema broken?", n)
	}
}

// ignoreRanges compares decoded schema structs by value: positions are
// checked by the golden files, and an hcl.Expression (limit) by
// TestValues.
var ignoreRanges = cmp.Options{
	cmpopts.IgnoreTypes(hcl.Range{}),
	cmpopts.IgnoreInterfaces(struct{ hcl.Expression }{}),
}

func ptr[T any](v T) *T { return &v }

// TestDecodeBody decodes account bodies into the schema structs: values
// through gohcl, plus decodeBody's rules that a value which fails to
// decode leaves its field unset, reported once, and that the first of two
// blocks allowed once is still decoded.
func TestDecodeBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       settingsHCL
		wantDiags  []string // summary; detail of each diagnostic, by position
	}{
		{
			name: "values",
			body: `server = "pop.example.com"
port = 110
keep = true
password_command = ["pass", "show", "mail"]
deliver {
  mda = ["/usr/bin/procmail", "-d", "{user}"]
  mda_temp_exit_codes = [75, 69]
}
multidrop {
  local_domains = ["example.com"]
  user "joe" {
    addresses = ["joe", "j.doe"]
    deliver { maildir = "/var/mail/{user}" }
  }
}`,
			want: settingsHCL{
				Server:          ptr("pop.example.com"),
				Port:            ptr(110),
				Keep:            ptr(true),
				PasswordCommand: &[]string{"pass", "show", "mail"},
				Deliver:         &destHCL{MDA: &[]string{"/usr/bin/procmail", "-d", "{user}"}, MDATempExitCodes: &[]int{75, 69}},
				Multidrop: &multidropHCL{
					LocalDomains: &[]string{"example.com"},
					Users: []*userHCL{{
						Name:      "joe",
						Addresses: &[]string{"joe", "j.doe"},
						Deliver:   &destHCL{Maildir: ptr("/var/mail/{user}")},
					}},
				},
			},
		},
		{
			name: "null is absent",
			body: `port = null
username = null`,
		},
		{
			name: "wrong types leave the field unset",
			body: `port = 2.5
keep = "yes"
deliver {
  smtp {
    server = "localhost:25"
    lmtp = "yes"
  }
}`,
			want: settingsHCL{Deliver: &destHCL{SMTP: &smtpHCL{Server: ptr("localhost:25")}}},
			wantDiags: []string{
				"Wrong type; port must be a whole number.",
				"Wrong type; keep must be true or false.",
				"Wrong type; lmtp must be true or false.",
			},
		},
		{
			name:      "an evaluation error is reported once",
			body:      `ca_file = env("POPFETCH_TEST_UNSET")`,
			wantDiags: []string{`Error in function call; Call to function "env" failed: environment variable POPFETCH_TEST_UNSET is not set; set it, or give a default: env("POPFETCH_TEST_UNSET", "...").`},
		},
		{
			name: "the first of two blocks is decoded",
			body: `deliver { maildir = "/a" }
deliver { maildir = "/b" }
multidrop {
  user "joe" {
    deliver { maildir = "/c" }
    deliver { maildir = 5 }
  }
}`,
			want: settingsHCL{
				Deliver: &destHCL{Maildir: ptr("/a")},
				Multidrop: &multidropHCL{Users: []*userHCL{{
					Name:    "joe",
					Deliver: &destHCL{Maildir: ptr("/c")},
				}}},
			},
			wantDiags: []string{
				"Duplicate deliver block; Only one deliver block is allowed; one was already declared at t.hcl:2,1-8.",
				"Duplicate deliver block; Only one deliver block is allowed; one was already declared at t.hcl:6,5-12.",
			},
		},
		{
			name: "a block with the wrong labels is not the first",
			body: `deliver "x" { maildir = "/a" }
deliver { maildir = "/b" }`,
			want:      settingsHCL{Deliver: &destHCL{Maildir: ptr("/b")}},
			wantDiags: []string{"Extraneous label for deliver; No labels are expected for deliver blocks."},
		},
		{
			name:      "unknown names",
			body:      `sever = "x"`,
			wantDiags: []string{`Unsupported argument; An argument named "sever" is not expected here. Did you mean "server"?`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "account \"a\" {\n" + tt.body + "\n}\n"
			f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			var top fileHCL
			diags = sortDiags(decodeBody(f.Body, newParser("t.hcl", testEUID).ctx, &top))
			var got []string
			for _, d := range diags {
				got = append(got, d.Summary+"; "+d.Detail)
			}
			if diff := cmp.Diff(tt.wantDiags, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
			if len(top.Accounts) != 1 {
				t.Fatalf("%d accounts decoded", len(top.Accounts))
			}
			if diff := cmp.Diff(tt.want, top.Accounts[0].Settings, ignoreRanges); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeWrongTypeOnce: a value of the wrong type gives one error at
// the whole value, and no second one about the zero value gohcl may have
// left in the field.
func TestDecodeWrongTypeOnce(t *testing.T) {
	fixedEnv(t)
	for _, body := range []string{`port = 2.5`, `port = "pop3s"`, `envelope_count = 0.5`, `mda_temp_exit_codes = [75.5]`} {
		src := minimal
		switch {
		case strings.HasPrefix(body, "envelope"):
			body = "multidrop {\nlocal_domains = [\"example.com\"]\n" + body + "\nuser \"joe\" {}\n}\ndeliver { maildir = \"/m/{user}\" }"
		case strings.HasPrefix(body, "mda"):
			body = "deliver {\nmda = [\"/bin/true\"]\n" + body + "\n}"
		}
		_, diags := parseOne(t, strings.Replace(src, "%s", body, 1))
		out := string(render(t, diags))
		if len(diags) != 1 || !strings.Contains(out, "error: Wrong type;") {
			t.Errorf("%s: diagnostics:\n%s\nwant exactly one Wrong type error", body, out)
		}
	}
}
