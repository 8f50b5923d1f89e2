package rcfile

import (
	"context"
	"strings"
	"testing"
)

// TestTokenCommandOutput: what the helper prints and what popfetch
// makes of it.
func TestTokenCommandOutput(t *testing.T) {
	big := strings.Repeat("A", 20<<10)
	for _, tt := range []struct {
		name, script string
		want         string // "" = must be an error
	}{
		// A helper that ends its line with CRLF (a Windows-made script,
		// `printf 'tok\r\n'`): the CR is trimmed like the LF.
		{"CRLF", `printf 'tok-123\r\n'`, "tok-123"},
		// A first line longer than the 16 KiB read bound: a clear error,
		// not its first 16 KiB handed out as the token (the server would
		// reject it twice and the account be held as if the grant were
		// bad).
		{"oversized", `printf '%s'` + " " + big, ""},
		// The token and nothing else on stdout; stderr chatter ignored.
		{"stderr noise", `echo progress >&2; echo tok-456`, "tok-456"},
		// Non-zero exit after printing a token: an error, and the token
		// must not be in it.
		{"exit 1 after token", `echo tok-789; echo 'failed: tok-789' >&2; exit 1`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := RunTokenCommand(context.Background(), []string{"/bin/sh", "-c", tt.script})
			if err != nil && strings.Contains(err.Error(), "tok-") {
				t.Errorf("error quotes the token: %v", err)
			}
			switch {
			case tt.want == "" && err == nil:
				t.Errorf("no error; token of %d bytes handed out", len(tok))
			case tt.want != "" && (err != nil || tok != tt.want):
				t.Errorf("RunTokenCommand = %.40q, %v; want %q", tok, err, tt.want)
			}
		})
	}
}

// TestSecretCommandFirstLineBound: password_command shares the runner; a
// first line cut by the read bound is refused with an error that says so,
// while a complete first line followed by more output than the bound is
// still taken.
func TestSecretCommandFirstLineBound(t *testing.T) {
	big := strings.Repeat("A", 2*maxSecretRead)
	for _, tt := range []struct {
		name, script, want, errWant string
	}{
		{"long first line", `printf '%s\n'` + " " + big, "", "longer than"},
		{"chatty after the line", `echo pw-1; printf '%s\n'` + " " + big, "pw-1", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := Password{Command: []string{"/bin/sh", "-c", tt.script}}
			got, err := p.Resolve(context.Background())
			if tt.errWant != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errWant) {
					t.Errorf("Resolve = %.20q, %v; want an error saying %q", got, err, tt.errWant)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
