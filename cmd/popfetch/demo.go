package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/popfetch/popfetch"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// demoRC is the rc file the demo writes; %[n]s are filled in at run time.
// It is a real rc file, loaded through rcfile.Load like any other.
const demoRC = `# Written by "popfetch demo". Two accounts on loopback POP3S servers
# whose certificates are signed by a throw-away CA.
state_dir = "%[1]s/state"

defaults {
  server  = "localhost"
  tls     = "implicit"
  ca_file = "%[1]s/ca.pem"
}

# A personal mailbox, delivered into one Maildir.
account "personal" {
  port          = %[2]d
  username      = "you"
  password_file = "%[1]s/password"
  deliver {
    maildir = "%[1]s/Maildir"
  }
}

# A catch-all mailbox for example.com, distributed to its users by the
# envelope header the ISP adds (Delivered-To), so bcc and list mail reach
# the right person; what matches nobody goes to the postmaster.
account "example.com" {
  port          = %[3]d
  username      = "catchall@example.com"
  password_file = "%[1]s/password"
  multidrop {
    local_domains   = ["example.com"]
    envelope_header = "Delivered-To"
    user "alice" { addresses = ["alice", "a.smith", "sales"] }
    user "bob"   { addresses = ["bob"] }
    user "carol" { addresses = ["carol"] }
  }
  deliver {
    maildir = "%[1]s/vmail/{user}/Maildir"
  }
  postmaster {
    maildir = "%[1]s/vmail/postmaster/Maildir"
  }
}
`

func (g *globals) demo(ctx context.Context, args []string) int {
	fs := g.flags("demo")
	if !g.parseNoArgs(fs, args) {
		return exitUsage
	}
	if err := g.runDemo(ctx); err != nil {
		fmt.Fprintf(g.stderr, "popfetch demo: %v\n", err)
		return exitFail
	}
	return exitOK
}

func (g *globals) runDemo(ctx context.Context) error {
	out := g.stdout
	dir, err := os.MkdirTemp("", "popfetch-demo-")
	if err != nil {
		return err
	}
	caPEM, serverTLS, _, err := pop3test.NewCert("localhost", "127.0.0.1")
	if err != nil {
		return err
	}
	const pass = "demo-password"
	start := func(user, sub string) (*pop3test.Server, int, error) {
		msgs, err := sampleMessages(sub)
		if err != nil {
			return nil, 0, err
		}
		s, err := pop3test.Start(pop3test.Options{User: user, Pass: pass, Messages: msgs, TLS: serverTLS, Implicit: true})
		if err != nil {
			return nil, 0, err
		}
		return s, len(msgs), nil
	}
	personal, np, err := start("you", "single")
	if err != nil {
		return err
	}
	defer personal.Close()
	domain, nd, err := start("catchall@example.com", "domain")
	if err != nil {
		return err
	}
	defer domain.Close()

	rcPath := filepath.Join(dir, "popfetch.hcl")
	files := map[string][]byte{
		"ca.pem":       caPEM,
		"password":     []byte(pass + "\n"),
		"popfetch.hcl": fmt.Appendf(nil, demoRC, dir, personal.Port(), domain.Port()),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "popfetch demo: two loopback POP3S servers hold %d personal and %d example.com messages (testdata/mail).\n", np, nd)
	fmt.Fprintf(out, "rc file: %s\n\n", rcPath)

	cfg, diags := rcfile.Load(rcPath)
	if diags.HasErrors() {
		rcfile.WriteDiagnostics(g.stderr, diags, rcfile.SourceFiles(diags))
		return fmt.Errorf("the demo's rc file is invalid")
	}
	p := &fetch.Poller{Log: g.logger(slog.LevelWarn), NoPollLog: true}
	poll := func(title string) error {
		fmt.Fprintf(out, "$ popfetch -f %s fetch    # %s\n", rcPath, title)
		for _, a := range cfg.Accounts {
			res := p.Poll(ctx, a)
			fmt.Fprintln(out, summary(res))
			if res.Err != nil {
				return res.Err
			}
		}
		fmt.Fprintln(out)
		return nil
	}
	if err := poll("first fetch"); err != nil {
		return err
	}
	fmt.Fprintln(out, "What landed where:")
	if err := listMaildirs(out, dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe servers now hold %d and %d messages: each was deleted only after it was delivered and its UIDL recorded.\n", len(personal.Messages()), len(domain.Messages()))
	fmt.Fprintln(out)
	if err := poll("second fetch: nothing new"); err != nil {
		return err
	}
	fmt.Fprintf(out, "Everything is in %s (remove it with: rm -r %s)\n", dir, dir)
	return nil
}

// sampleMessages returns the embedded testdata/mail/<sub> messages with UIDs
// derived from their file names.
func sampleMessages(sub string) ([]pop3test.Message, error) {
	root := path.Join("testdata/mail", sub)
	ents, err := fs.ReadDir(popfetch.SampleMail, root)
	if err != nil {
		return nil, err
	}
	var out []pop3test.Message
	for _, e := range ents {
		b, err := fs.ReadFile(popfetch.SampleMail, path.Join(root, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, pop3test.Message{UID: sub + "-" + strings.TrimSuffix(e.Name(), ".eml"), Data: b})
	}
	return out, nil
}

// listMaildirs prints every delivered message under dir: its Maildir, its
// Subject and, for the postmaster, the reason it is there.
func listMaildirs(out interface{ Write([]byte) (int, error) }, dir string) error {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) != "new" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		md, _ := filepath.Rel(dir, filepath.Dir(filepath.Dir(p)))
		subj := field(b, "Subject")
		if d, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
			subj = d // RFC 2047, for display only
		}
		line := fmt.Sprintf("  %-28s %s", md+"/", subj)
		if r := field(b, "X-Popfetch-Reason"); r != "" {
			line += "\n  " + strings.Repeat(" ", 29) + "X-Popfetch-Reason: " + r
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return err
}

// field returns a header field's raw value (the demo's own messages only).
func field(msg []byte, name string) string {
	for _, l := range bytes.Split(msg, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(k), name) {
			return strings.TrimSpace(string(v))
		}
	}
	return ""
}
