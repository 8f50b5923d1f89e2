package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeSection returns the text of the README.md section under heading
// (a "## " line) up to the next one.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", heading)
	}
	s = s[i+len(heading)+5:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

var hclBlockRE = regexp.MustCompile("(?s)```hcl\n(.*?)```")

// TestReadmeOAuth2Examples: the rc examples of the README's "Microsoft
// 365" and "Gmail / Google Workspace" sections (the app-only oauth2 block
// inside an account, the token helper line as an account of its own) pass
// `popfetch check` without a warning and mean what the text says (the
// default flows, the app-only scope); `popfetch login` of the app-only
// account says no login is needed; and the hold message the README
// quotes is the one popfetch writes.
func TestReadmeOAuth2Examples(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_STATE_HOME", "")
	// A token helper named as in the README, found in $PATH.
	bin := filepath.Join(home, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.WriteFile(filepath.Join(bin, "oama"), []byte("#!/bin/sh\necho tok\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	secret := filepath.Join(home, "contoso-secret")
	writeFile(t, secret, "app-secret\n")
	os.MkdirAll(filepath.Join(home, ".config", "popfetch"), 0o700)
	writeFile(t, filepath.Join(home, ".config", "popfetch", "google-secret"), "google-secret\n")

	ms, google := readmeSection(t, "Microsoft 365"), readmeSection(t, "Gmail / Google Workspace")
	var blocks []string
	for _, m := range hclBlockRE.FindAllStringSubmatch(ms+google, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) != 3 {
		t.Fatalf("found %d hcl examples in the two sections; want 3 (Microsoft, app-only, Google)", len(blocks))
	}
	var rc strings.Builder
	rc.WriteString("state_dir = \"" + filepath.Join(home, "state") + "\"\n")
	for _, b := range blocks {
		if strings.HasPrefix(b, "  oauth2 {") {
			// The app-only block, in an account of its own; its secret
			// file lives here, not in /etc.
			b = regexp.MustCompile(`client_secret_file = "[^"]*"`).ReplaceAllString(b, `client_secret_file = "`+secret+`"`)
			b = "account \"app\" {\n  server   = \"outlook.office365.com\"\n  username = \"sales@contoso.com\"\n" + b +
				"  deliver { maildir = \"~/Maildir\" }\n}\n"
		}
		rc.WriteString(b)
	}
	cmd := regexp.MustCompile("`(oauth2_token_command = \\[[^`]*\\])`").FindStringSubmatch(google)
	if cmd == nil {
		t.Fatal("the Google section has no oauth2_token_command example")
	}
	rc.WriteString("account \"helper\" {\n  server   = \"pop.gmail.com\"\n  username = \"ann@gmail.com\"\n  " + cmd[1] +
		"\n  deliver { maildir = \"~/Maildir\" }\n}\n")
	path := filepath.Join(home, "popfetch.hcl")
	writeFile(t, path, rc.String())

	code, out, errs := runCLI(t, "-f", path, "check")
	if code != exitOK || errs != "" {
		t.Fatalf("popfetch check of the README's examples = %d; want 0 and no diagnostics\n%s\n%s\n%s", code, rc.String(), out, errs)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)account "work" \{.*?provider\s+= "microsoft".*?tenant\s+= "contoso.onmicrosoft.com".*?flow\s+= "device"`),
		regexp.MustCompile(`(?s)account "app" \{.*?scopes\s+= \["https://outlook.office365.com/.default"\].*?flow\s+= "client_credentials"`),
		regexp.MustCompile(`(?s)account "gmail" \{.*?provider\s+= "google".*?scopes\s+= \["https://mail.google.com/"\].*?flow\s+= "browser"`),
		regexp.MustCompile(`(?s)account "helper" \{.*?oauth2_token_command = \["oama", "access", "joe@gmail.com"\]`),
	} {
		if !want.MatchString(out) {
			t.Errorf("popfetch check output does not match %s:\n%s", want, out)
		}
	}
	if code, out, errs := runCLI(t, "-f", path, "login", "app"); code != exitOK || !strings.Contains(out, "popfetch gets its tokens by itself") {
		t.Errorf("popfetch login app = %d; want 0 and no login needed\n%s%s", code, out, errs)
	}

	// The hold as the README shows it: the daemon's message and the
	// error's own words.
	for _, want := range []string{
		"authentication failed; not retrying until the account's config changes, SIGHUP or `popfetch now`",
		"oauth2 sign-in required: the identity provider refused the refresh token (invalid_grant:",
		"run `popfetch login work` to sign in again",
		"held: run `popfetch login work`, then SIGHUP or `popfetch now`",
	} {
		if !strings.Contains(ms, want) {
			t.Errorf("the Microsoft 365 section does not quote %q", want)
		}
	}
}
