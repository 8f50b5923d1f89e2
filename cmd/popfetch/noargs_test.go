package main

import "testing"

// The commands that take flags only refuse arguments with a usage error
// that names the command.
func TestNoArgsCommands(t *testing.T) {
	for _, tc := range []struct{ args []string }{
		{[]string{"run", "extra"}},
		{[]string{"demo", "extra"}},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		want := "popfetch " + tc.args[0] + " takes no arguments\n"
		if code != exitUsage || stderr != want {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", tc.args, code, stderr, exitUsage, want)
		}
	}
}
