package rcfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStateDirOf(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_STATE_HOME", "")
	tests := []struct {
		name, src, want string
	}{
		{"valid", "state_dir = \"/srv/state\"\naccount \"a\" {}\n", "/srv/state"},
		{"rest broken", "state_dir = \"~/st\"\naccount \"a\" { no_such = 1 }\n", filepath.Join(dir, "st")},
		{"relative", "state_dir = \"st\"\n", filepath.Join(dir, "st")},
		{"syntax error", "state_dir = \"/srv/state\"\naccount {{{\n", "/srv/state"},
		{"syntax error before", "account \"a\" {\n  server = \n}\nstate_dir = \"/srv/state\"\n", "/srv/state"},
		{"absent", "account \"a\" {}\n", filepath.Join(dir, ".local/state/popfetch")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "rc.hcl")
			if err := os.WriteFile(p, []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := stateDirOf(p, testEUID)
			if err != nil || got != tt.want {
				t.Fatalf("StateDirOf = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestStateDirOfRoot: root's default state directory is the FHS one,
// whatever $HOME says.
func TestStateDirOfRoot(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "rc.hcl")
	if err := os.WriteFile(p, []byte("account \"a\" {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := stateDirOf(p, 0); err != nil || got != "/var/lib/popfetch" {
		t.Fatalf("stateDirOf as root = %q, %v; want /var/lib/popfetch", got, err)
	}
}

// FuzzStateDirOf: whatever the file holds, a broken one included,
// stateDirOf does not panic and returns an absolute directory or an error.
func FuzzStateDirOf(f *testing.F) {
	for _, s := range []string{
		"state_dir = \"/srv/state\"\naccount {{{\n",
		"account \"a\" {\n  server = \n}\nstate_dir = \"/srv/state\"\n",
		"state_dir = \"~/st\"\n",
		"state_dir = 1\n",
		"state_dir = \"${\n",
		"state_dir = <<EOT\n/x\nEOT\n",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src string) {
		t.Setenv("HOME", dir)
		t.Setenv("XDG_STATE_HOME", "")
		p := filepath.Join(t.TempDir(), "rc.hcl")
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := stateDirOf(p, testEUID)
		if err == nil && !filepath.IsAbs(got) {
			t.Fatalf("stateDirOf(%q) = %q; want an absolute path", src, got)
		}
	})
}
