package rcfile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestJumpHashReference: jumpHash gives the results of Lamping and
// Veach's reference C++ function for keys and bucket counts that other
// implementations publish as generated from it.
func TestJumpHashReference(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  uint64
		want []int // for n = 1, 2, ...
	}{
		{0, []int{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{1, []int{0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17}},
		{0xdeadbeef, []int{0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16}},
		{0x0ddc0ffeebadf00d, []int{0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15}},
	}
	for _, tt := range tests {
		for i, want := range tt.want {
			if got := jumpHash(tt.key, i+1); got != want {
				t.Errorf("jumpHash(%#x, %d) = %d; want %d", tt.key, i+1, got, want)
			}
		}
	}
	if got := jumpHash(256, 1024); got != 520 {
		t.Errorf("jumpHash(256, 1024) = %d; want 520", got)
	}
}

// TestShardOfGolden pins the assignment of mailboxes to shards. It must
// never change: replicas of two versions that disagreed would poll a
// mailbox twice (with keep = true, every message delivered twice) or not
// at all. A failure here is a broken upgrade, not a test to update.
func TestShardOfGolden(t *testing.T) {
	t.Parallel()
	ns := []int{1, 2, 3, 4, 5, 8, 10, 100, 1000}
	golden := []struct {
		mailbox string
		want    []int // for each of ns
	}{
		{"alice@pop.example.com", []int{0, 1, 1, 1, 1, 1, 9, 73, 73}},
		{"bob@pop.example.com", []int{0, 0, 2, 2, 4, 4, 4, 4, 781}},
		{"carol@mail.example.org", []int{0, 1, 1, 1, 4, 4, 9, 72, 72}},
		{"u000@127.0.0.1", []int{0, 0, 0, 0, 0, 0, 0, 18, 911}},
		{"u001@127.0.0.1", []int{0, 1, 1, 1, 1, 7, 7, 66, 271}},
		{"u299@127.0.0.1", []int{0, 1, 2, 2, 2, 2, 2, 71, 953}},
		{"tunnel-a", []int{0, 1, 2, 3, 3, 3, 3, 89, 703}}, // a mailbox_id
		{"jörg@pop.example.de", []int{0, 0, 0, 0, 4, 4, 4, 91, 583}},
		{"", []int{0, 1, 2, 2, 2, 5, 5, 22, 22}},
	}
	for _, g := range golden {
		for i, n := range ns {
			if got := ShardOf(g.mailbox, n); got != g.want[i] {
				t.Errorf("ShardOf(%q, %d) = %d; want %d (the mapping must never change)", g.mailbox, n, got, g.want[i])
			}
		}
	}
}

// TestShardOfSpreadsAndMovesLittle: 3000 mailboxes spread evenly, and
// going from n to n+1 shards moves a mailbox only to the new shard, and
// only about 1/(n+1) of them.
func TestShardOfSpreadsAndMovesLittle(t *testing.T) {
	t.Parallel()
	const total = 3000
	boxes := make([]string, total)
	for i := range boxes {
		boxes[i] = fmt.Sprintf("user%d@pop%d.example.com", i, i%7)
	}
	for n := 1; n <= 12; n++ {
		count := make([]int, n+1)
		moved := 0
		for _, b := range boxes {
			from, to := ShardOf(b, n), ShardOf(b, n+1)
			count[from]++
			if from != to {
				moved++
				if to != n {
					t.Fatalf("%s moved from %d/%d to %d/%d; only a move to the new shard is allowed", b, from, n, to, n+1)
				}
			}
		}
		for i, c := range count[:n] {
			if want := total / n; c < want*8/10 || c > want*12/10 {
				t.Errorf("shard %d/%d owns %d of %d mailboxes; want about %d", i, n, c, total, want)
			}
		}
		if want := total / (n + 1); moved < want*7/10 || moved > want*13/10 {
			t.Errorf("from %d to %d shards %d of %d mailboxes moved; want about %d", n, n+1, moved, total, want)
		}
	}
}

func TestParseShard(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want Shard
	}{
		{"0/1", Shard{0, 1}},
		{"0/3", Shard{0, 3}},
		{"2/3", Shard{2, 3}},
		{"999/1000", Shard{999, 1000}},
	}
	for _, tt := range good {
		got, err := ParseShard(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("ParseShard(%q).String() = %q", tt.in, got.String())
		}
	}
	bad := []struct{ in, want string }{
		{"", "i/N"},
		{"3", "i/N"},
		{"3/3", "last of 3 is 2/3"},
		{"1/0", "1 ≤ N ≤ 1000"},
		{"0/0", "1 ≤ N ≤ 1000"},
		{"0/1001", "1 ≤ N ≤ 1000"},
		{"-1/3", "decimal"},
		{"+1/3", "decimal"},
		{"1 /3", "decimal"},
		{"1/3 ", "decimal"},
		{"01/3", "decimal"},
		{"1/03", "decimal"},
		{"1/3/4", "decimal"},
		{"a/b", "decimal"},
		{"0x1/3", "decimal"},
		{"1/99999999999999999999", "decimal"},
		{"١/٣", "decimal"}, // Arabic-Indic digits
	}
	for _, tt := range bad {
		got, err := ParseShard(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseShard(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"0/1", "2/3", "3/3", "01/3", "", "/", "999/1000", "-0/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShard(s)
		if err != nil {
			if sh != (Shard{}) {
				t.Fatalf("ParseShard(%q) = %v with error %v", s, sh, err)
			}
			return
		}
		if sh.Count < 1 || sh.Count > MaxShards || sh.Index < 0 || sh.Index >= sh.Count || sh.String() != s {
			t.Fatalf("ParseShard(%q) = %+v", s, sh)
		}
	})
}

// TestShardOwns: Owns and Owned follow ShardOf of the account's
// mailbox (the journal's name), so two accounts of one mailbox_id, or one
// login with another port, land on the same shard; no shard, and 0/1,
// own everything.
func TestShardOwns(t *testing.T) {
	t.Parallel()
	var accts []*Account
	for i := range 30 {
		accts = append(accts, &Account{Name: fmt.Sprint(i), Username: fmt.Sprintf("u%d", i), Server: "POP.example.com", Port: 995})
	}
	accts = append(accts, &Account{Name: "id", Username: "x", Server: "127.0.0.1", MailboxID: "tunnel-a"})
	for _, s := range []Shard{{}, {0, 1}} {
		if got := s.Owned(accts); len(got) != len(accts) {
			t.Errorf("Shard %v owns %d of %d accounts; want all", s, len(got), len(accts))
		}
	}
	seen := map[string]int{}
	for i := range 3 {
		s := Shard{i, 3}
		for _, a := range s.Owned(accts) {
			seen[a.Name]++
			if want := ShardOf(a.Mailbox(), 3); want != i {
				t.Errorf("shard %v owns %s of shard %d", s, a.Name, want)
			}
		}
	}
	for _, a := range accts {
		if seen[a.Name] != 1 {
			t.Errorf("account %s is owned by %d of 3 shards; want 1", a.Name, seen[a.Name])
		}
	}
	// The server's case and the port do not matter: the mailbox does.
	other := &Account{Username: "u7", Server: "pop.EXAMPLE.com", Port: 110}
	if ShardOf(other.Mailbox(), 3) != ShardOf(accts[7].Mailbox(), 3) {
		t.Errorf("u7 on port 110 and on 995 land on different shards")
	}
	if (Shard{2, 3}).Owns(accts[30]) != (ShardOf("tunnel-a", 3) == 2) {
		t.Errorf("an account with mailbox_id is not sharded by it")
	}
}

// TestShardAttribute: shard = "i/N" at the top of the rc file; a bad
// value is an error at its file:line:col.
func TestShardAttribute(t *testing.T) {
	fixedEnv(t)
	cfg, diags := parseOne(t, "shard = \"1/3\"\n"+fmt.Sprintf(minimal, ""))
	if diags.HasErrors() {
		t.Fatalf("Parse: %s", render(t, diags))
	}
	if cfg.Shard != (Shard{1, 3}) || cfg.ShardRange.Start.Line != 1 {
		t.Errorf("Shard = %v at %v; want 1/3 at line 1", cfg.Shard, cfg.ShardRange)
	}
	var b bytes.Buffer
	cfg.Format(&b)
	if !strings.Contains(b.String(), `shard        = "1/3"`) {
		t.Errorf("Format does not show the shard:\n%s", b.String())
	}
	cfg, diags = parseOne(t, fmt.Sprintf(minimal, ""))
	if diags.HasErrors() || cfg.Shard != (Shard{}) || len(cfg.Accounts) != 1 {
		t.Fatalf("no shard: %v %s", cfg.Shard, render(t, diags))
	}
	b.Reset()
	cfg.Format(&b)
	if strings.Contains(b.String(), "shard") {
		t.Errorf("Format shows a shard that is not set:\n%s", b.String())
	}
	for _, tt := range []struct{ value, want string }{
		{`"3/3"`, `/etc/popfetch/test.hcl:2:1: error: Invalid shard; shard "3/3"`},
		{`"1/3 "`, `/etc/popfetch/test.hcl:2:1: error: Invalid shard`},
		{`3`, `/etc/popfetch/test.hcl:2:1: error: Invalid shard`},
		{`"0/0"`, `1 ≤ N ≤ 1000`},
		{`["0/3"]`, `/etc/popfetch/test.hcl:2:9: error: Wrong type`},
	} {
		_, diags := parseOne(t, "\nshard = "+tt.value+"\n"+fmt.Sprintf(minimal, ""))
		out := string(render(t, diags))
		if !diags.HasErrors() || !strings.Contains(out, tt.want) {
			t.Errorf("shard = %s:\n%s\nwant an error containing %q", tt.value, out, tt.want)
		}
	}
}
