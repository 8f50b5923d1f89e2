package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestStreamCrashFake kills a real `popfetch fetch` at the steps of a
// batch of messages of 4 MiB and more, which a single-drop Maildir
// account writes into tmp/ as they arrive (deliver.Maildir.Stream),
// then runs it again: every file in new/ after the kill is the whole
// copy (the added Received field, then the message with LF line ends,
// dot-stuffing undone), no
// message left the server without its copy, and after the second run
// each message is in new/ exactly once. Their bodies hold bare CRs and
// "\r\r\n" on both sides of 64 KiB edges (the chunks a spool file is
// read in), which the copy has as line ends and the body digest reads as
// line ends too (ourCopy in fetch/identity.go), so no kill makes one
// come twice.
func TestStreamCrashFake(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds a second binary, large messages")
	}
	bin, err := crashBin()
	if err != nil {
		t.Fatal(err)
	}
	const msgs = 6
	var raw [][]byte
	for i := 1; i <= msgs; i++ {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: a@example.net\r\nTo: b@example.com\r\nSubject: big %d\r\nMessage-ID: <big-%d@example.net>\r\nX-Seq: %d\r\n\r\n", i, i, i)
		for n := 0; b.Len() < 4<<20+i*7919; n++ {
			switch n % 5 {
			case 0:
				b.WriteString(".a line that starts with a dot\r\n")
			case 1:
				b.WriteString("a bare\nLF\r\n")
			case 2:
				b.WriteString("..\r\n")
			case 3:
				// Up to 2 bytes before the next 64 KiB edge, then a
				// CR across it.
				edge := (b.Len()/(64<<10) + 1) * (64 << 10)
				b.WriteString(strings.Repeat("w", max(0, edge-b.Len()-1-n%3)))
				b.WriteString([]string{"\r", "\r\n", "\r\r\n", "\rbare CR\r"}[n%4])
				b.WriteString("after the edge\r\n")
			default:
				fmt.Fprintf(&b, "body line %d of message %d\r\n", n, i)
			}
		}
		if i%2 == 0 {
			b.WriteString("no final line end")
		}
		raw = append(raw, b.Bytes())
	}
	for _, cs := range []struct {
		step string
		n    int
	}{{"file-synced", 1}, {"file-synced", 4}, {"moved", 2}, {"dir-synced", 3}, {"journal-synced", 1}} {
		t.Run(fmt.Sprintf("%s:%d", cs.step, cs.n), func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{User: "user", Pass: "pass"})
			crash := fakeCrashServer(srv)
			crash.put(raw)
			dir := t.TempDir()
			maildir := filepath.Join(dir, "Maildir")
			rc := filepath.Join(dir, "popfetch.hcl")
			writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{name: "sc", port: crash.port, user: crash.user, pass: "pass", maildir: maildir}))
			cmd := exec.Command(bin, "-f", rc, "fetch")
			cmd.Env = append(os.Environ(), fmt.Sprintf("POPFETCH_CRASH_AT=%s:%d", cs.step, cs.n))
			var buf bytes.Buffer
			cmd.Stdout, cmd.Stderr = &buf, &buf
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("popfetch was not killed at %s:%d: %v\n%s", cs.step, cs.n, err, buf.String())
			}
			on := map[int]bool{}
			for _, m := range srv.Messages() {
				on[xSeq(t, m.Data)] = true
			}
			got := wholeCopies(t, maildir, raw)
			for s := 1; s <= msgs; s++ {
				if !on[s] && got[s] == 0 {
					t.Errorf("message %d deleted from the server with no copy", s)
				}
			}
			res := popfetchCmd(t, "", nil, "-f", rc, "fetch")
			if res.code != exitOK {
				t.Fatalf("fetch after the kill: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			got = wholeCopies(t, maildir, raw)
			for s := 1; s <= msgs; s++ {
				if got[s] != 1 {
					t.Errorf("message %d: %d copies; want 1", s, got[s])
				}
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("server holds %d messages; want 0", n)
			}
		})
	}
}

// wholeCopies counts the copies of each message of raw (by X-Seq) in
// maildir's new/ and cur/, failing the test for any that is not the whole
// copy: one Received field, then the message with every CRLF, bare CR
// and bare LF an LF, ending in one.
func wholeCopies(t *testing.T, maildir string, raw [][]byte) map[int]int {
	t.Helper()
	got := map[int]int{}
	for _, p := range maildirFiles(t, maildir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("Received: ")) {
			t.Fatalf("%s does not begin with its Received field: %q", p, b[:min(len(b), 80)])
		}
		i := bytes.Index(b, []byte("\nX-Seq: "))
		if i < 0 {
			t.Fatalf("%s has no X-Seq", p)
		}
		var seq int
		fmt.Sscanf(string(b[i+len("\nX-Seq: "):]), "%d", &seq)
		if seq < 1 || seq > len(raw) {
			t.Fatalf("%s: X-Seq %d", p, seq)
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(raw[seq-1]), "\r\n", "\n"), "\r", "\n")
		if !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		from := bytes.Index(b, []byte("\nFrom: a@example.net\n"))
		if from < 0 || string(b[from+1:]) != want {
			t.Fatalf("%s (%d bytes) is not the whole copy of message %d (%d bytes of it)", p, len(b), seq, len(want))
		}
		if strings.Contains(string(b[:from+1]), "\n\n") {
			t.Fatalf("%s: an empty line in its added fields", p)
		}
		got[seq]++
	}
	return got
}
