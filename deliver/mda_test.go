package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/popfetch/popfetch/deliver/delivertest"
	"github.com/popfetch/popfetch/internal/testutil"
)

// mdaScript returns the absolute path of a test MDA in testdata/mda.
func mdaScript(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "mda", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mdaMessage(raw string) *Message {
	return &Message{
		Account: "acct", Server: "pop.example.net", User: "joe", UID: "uid-1",
		Fetched: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Raw:     []byte(raw),
	}
}

// newTestMDA builds an MDA whose scripts write into a fresh $OUT directory.
func newTestMDA(t *testing.T, argv []string, opts MDAOptions, env ...string) (*MDA, string) {
	t.Helper()
	out := t.TempDir()
	if opts.Timeout == 0 {
		opts.Timeout = 4 * time.Second
	}
	opts.LocalHost = "mx.local"
	opts.Env = append([]string{"PATH=/usr/bin:/bin", "OUT=" + out}, env...)
	d, err := NewMDA(argv, opts)
	if err != nil {
		t.Fatalf("NewMDA(%q) = %v", argv, err)
	}
	return d, out
}

func TestMDANew(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		ok   bool
	}{
		{[]string{"/usr/bin/procmail", "-d", "{user}"}, true},
		{[]string{"/usr/bin/procmail", "-f", "{sender}", "-a", "{address}", "-a", "{domain}"}, true},
		{[]string{"/bin/x", "--to={user}@{domain}", "{}", "${HOME}", "{not closed"}, false}, // ${HOME} is {HOME}: unknown
		{[]string{"/bin/x", "{}", "{not closed", "a{b c}"}, true},
		{[]string{"/bin/x", "{User}"}, false},
		{[]string{"/bin/x", "{recipient}"}, false},
		{[]string{"procmail", "-d", "{user}"}, false},
		{[]string{"./procmail"}, false},
		{[]string{"bin/procmail"}, false},
		{[]string{"/bin/{user}"}, false},
		{[]string{"/bin/x", "a\x00b"}, false},
		{nil, false},
	} {
		_, err := NewMDA(tc.argv, MDAOptions{})
		if (err == nil) != tc.ok {
			t.Errorf("NewMDA(%q) = %v; want ok=%v", tc.argv, err, tc.ok)
		}
	}
}

func TestMDADefaultEnv(t *testing.T) {
	t.Setenv("POPFETCH_SECRET", "hunter2")
	t.Setenv("HOME", "/home/joe")
	d, err := NewMDA([]string{"/bin/true"}, MDAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(d.opts.Env, "\n")
	if strings.Contains(env, "hunter2") || !strings.Contains(env, "PATH=/usr/bin:/bin") || !strings.Contains(env, "HOME=/home/joe") {
		t.Errorf("default env = %q; want minimal PATH/HOME/USER/LOGNAME only", d.opts.Env)
	}
	if d.opts.Timeout != 5*time.Minute {
		t.Errorf("default timeout = %v", d.opts.Timeout)
	}
}

func TestMDADelivered(t *testing.T) {
	stub := delivertest.NewMDA(t)
	d, _ := newTestMDA(t, stub.Argv("-f", "{sender}", "-d", "{user}", "--", "{address}", "x{domain}y"), MDAOptions{})
	m := mdaMessage("From: a@example.org\r\nSubject: hi\r\n\r\nline1\r\nbare\rcr\nlf\r\n")
	rc := Recipient{User: "joe", Address: "joe@example.com", Domain: "example.com"}
	errs := d.Deliver(context.Background(), m, "", []Recipient{rc}, []Field{{"X-Popfetch-Reason", "test"}})
	if len(errs) != 1 || errs[0] != nil {
		t.Fatalf("Deliver = %v; want [nil]", errs)
	}
	want := stub.Argv("-f", "MAILER-DAEMON", "-d", "joe", "--", "joe@example.com", "xexample.comy")
	if got := stub.LastArgv(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("argv = %q; want %q", got, want)
	}
	stdin := stub.Messages(t, "-f") // the stub files a message under its first argument
	if len(stdin) != 1 {
		t.Fatalf("the MDA stored %d messages; want 1", len(stdin))
	}
	body := stdin[0]
	if bytes.Contains(body, []byte("\r")) {
		t.Errorf("stdin has CR; want LF only:\n%q", body)
	}
	s := string(body)
	for _, w := range []string{"X-Popfetch-Reason: test\nReceived: from pop.example.net\n", "\tfor <joe@example.com>;", "\nDelivered-To: joe@example.com\nFrom: a@example.org\n", "\n\nline1\nbare\ncr\nlf\n"} {
		if !strings.Contains(s, w) {
			t.Errorf("stdin lacks %q:\n%s", w, s)
		}
	}
	if !strings.HasPrefix(s, "X-Popfetch-Reason: test\n") {
		t.Errorf("extra fields not first:\n%s", s)
	}
}

func TestMDAOneRunPerRecipient(t *testing.T) {
	stub := delivertest.NewMDA(t)
	d, _ := newTestMDA(t, stub.Argv("{user}"), MDAOptions{})
	m := mdaMessage("Subject: x\r\n\r\nb\r\n")
	rcpts := []Recipient{{User: "a"}, {User: "../etc"}, {User: "b"}}
	errs := d.Deliver(context.Background(), m, "s@x", rcpts, nil)
	if errs[0] != nil || errs[2] != nil || !IsPermanent(errs[1]) {
		t.Fatalf("Deliver = %v; want [nil permanent nil]", errs)
	}
	if got := stub.LastArgv(t); got[1] != "b" {
		t.Errorf("last run argv = %q", got)
	}
	if runs := stub.Runs(t); strings.Join(runs, " ") != "a b" {
		t.Errorf("MDA runs for %q; want a and b, each once", runs)
	}
	body := stub.Messages(t, "b")[0]
	if bytes.Contains(body, []byte("Delivered-To")) {
		t.Errorf("Delivered-To without an address:\n%s", body)
	}
}

func TestMDAStatus(t *testing.T) {
	allTemp := []int{75, 73, 74}
	for _, tc := range []struct {
		name        string
		script      string
		env         []string
		allowStderr bool
		tempCodes   []int
		wantOK      bool
		permanent   bool
		reason      string
	}{
		{name: "exit0", script: "status.sh", wantOK: true},
		{name: "tempfail", script: "status.sh", env: []string{"CODE=75", "STDERR=try later"}, reason: "MDA exit 75: try later"},
		{name: "exit1", script: "status.sh", env: []string{"CODE=1", "STDERR=mailbox \x1b[31mfull"}, permanent: true, reason: `MDA exit 1: mailbox \x1b[31mfull`},
		{name: "exit67", script: "status.sh", env: []string{"CODE=67"}, permanent: true, reason: "MDA exit 67"},
		// 73 and 74 are permanent unless the admin lists them.
		{name: "cantcreat", script: "status.sh", env: []string{"CODE=73"}, permanent: true, reason: "MDA exit 73"},
		{name: "ioerr", script: "status.sh", env: []string{"CODE=74"}, permanent: true, reason: "MDA exit 74"},
		{name: "cantcreatListed", script: "status.sh", env: []string{"CODE=73"}, tempCodes: allTemp, reason: "MDA exit 73"},
		{name: "ioerrListed", script: "status.sh", env: []string{"CODE=74"}, tempCodes: allTemp, reason: "MDA exit 74"},
		{name: "tempfailListed", script: "status.sh", env: []string{"CODE=75"}, tempCodes: allTemp, reason: "MDA exit 75"},
		{name: "otherListed", script: "status.sh", env: []string{"CODE=1"}, tempCodes: allTemp, permanent: true, reason: "MDA exit 1"},
		// An admin who replaced 75 made it permanent.
		{name: "tempfailUnlisted", script: "status.sh", env: []string{"CODE=75"}, tempCodes: []int{73}, permanent: true, reason: "MDA exit 75"},
		{name: "noTempCodes", script: "status.sh", env: []string{"CODE=75"}, tempCodes: []int{}, permanent: true, reason: "MDA exit 75"},
		{name: "signal", script: "selfkill.sh", reason: "MDA killed by signal 9 (killed)"},
		{name: "signalListed", script: "selfkill.sh", tempCodes: []int{73}, reason: "MDA killed by signal 9 (killed)"},
		// Exit 0 with words on stderr: one postmaster copy, not a
		// duplicate on every poll.
		{name: "stderr", script: "status.sh", env: []string{"STDERR=warning: recipe failed"}, permanent: true, reason: "MDA exit 0 but wrote to stderr: warning: recipe failed"},
		{name: "stderrBlank", script: "status.sh", env: []string{"STDERR= \t"}, permanent: true, reason: "MDA exit 0 but wrote to stderr: (only white space)"},
		{name: "stderrAllowed", script: "status.sh", env: []string{"STDERR=just chatty"}, allowStderr: true, wantOK: true},
		{name: "stderrAllowedExit1", script: "status.sh", env: []string{"CODE=1", "STDERR=bad"}, allowStderr: true, permanent: true, reason: "MDA exit 1: bad"},
		{name: "missing", script: "does-not-exist.sh", reason: "MDA could not be started"},
		{name: "notExecutable", script: "../../mda_test.go", reason: "MDA could not be started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newTestMDA(t, []string{mdaScript(t, tc.script)}, MDAOptions{AllowStderr: tc.allowStderr, TempExitCodes: tc.tempCodes}, tc.env...)
			errs := d.Deliver(context.Background(), mdaMessage("Subject: x\r\n\r\nbody\r\n"), "", []Recipient{{}}, nil)
			err := errs[0]
			if tc.wantOK {
				if err != nil {
					t.Fatalf("Deliver = %v; want nil", err)
				}
				return
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("Deliver = %v; want *Error", err)
			}
			if de.Permanent != tc.permanent || !strings.HasPrefix(de.Reason, tc.reason) {
				t.Errorf("Deliver = %v (reason %q, permanent %v); want reason %q, permanent %v", err, de.Reason, de.Permanent, tc.reason, tc.permanent)
			}
		})
	}
}

func TestMDATempExitCodesChecked(t *testing.T) {
	for _, codes := range [][]int{{0}, {75, 256}, {-1}} {
		if _, err := NewMDA([]string{"/bin/true"}, MDAOptions{TempExitCodes: codes}); err == nil {
			t.Errorf("NewMDA(TempExitCodes %v) = nil error; want one", codes)
		}
	}
	codes := []int{75, 73}
	d, err := NewMDA([]string{"/bin/true"}, MDAOptions{TempExitCodes: codes})
	if err != nil {
		t.Fatal(err)
	}
	codes[0] = 1 // the caller's slice is not the MDA's
	if d.opts.TempExitCodes[0] != 75 {
		t.Errorf("TempExitCodes = %v; want a copy [75 73]", d.opts.TempExitCodes)
	}
	if d, _ := NewMDA([]string{"/bin/true"}, MDAOptions{}); !slices.Equal(d.opts.TempExitCodes, []int{75}) {
		t.Errorf("default TempExitCodes = %v; want [75]", d.opts.TempExitCodes)
	}
}

// The first lines of stderr, not only the first, reach the reason and the
// error text that is logged.
func TestMDAStderrLines(t *testing.T) {
	said := "procmail: Error while writing to \"/var/mail/joe\"\r\n\n  \nprocmail: Quota exceeded\nprocmail: Trying \x1b]0;pwned\x07\xff\u202e\nfourth line\n"
	d, _ := newTestMDA(t, []string{mdaScript(t, "status.sh")}, MDAOptions{}, "CODE=1", "STDERR="+said)
	err := d.Deliver(context.Background(), mdaMessage("a: b\r\n\r\n"), "", []Recipient{{}}, nil)[0]
	want := `MDA exit 1: procmail: Error while writing to "/var/mail/joe" | procmail: Quota exceeded | procmail: Trying \x1b]0;pwned\x07\xff\u202e`
	var de *Error
	if !errors.As(err, &de) || !de.Permanent || de.Reason != want {
		t.Fatalf("Deliver = %v (reason %q); want permanent, reason %q", err, de.Reason, want)
	}
	// The error text is what the log shows: the lines once, and the status.
	if msg := err.Error(); strings.Count(msg, "procmail: Quota exceeded") != 1 || !strings.Contains(msg, "exit status 1") {
		t.Errorf("error text %q: want the stderr lines once and the exit status", msg)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("Deliver = %v; want it to wrap the *exec.ExitError", err)
	}
}

func TestMDAStderrHead(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"\n \r\n\t\n", ""},
		{"one\n", "one"},
		{"a\tb\x00c\x7f", "a b\\x00c\\x7f"},
		{"a\nb\nc\nd", "a | b | c"},
		{"\xc3(", "\\xc3("},
		{"bidi\u202eevil\u0085x", "bidi\\u202eevil\\u0085x"},
		{long, strings.Repeat("é", (stderrHeadBytes-3)/2) + "..."},
		{"x\n" + long, "x | " + strings.Repeat("é", (stderrHeadBytes-3-4)/2) + "..."},
		{strings.Repeat("\x1b", 100), strings.Repeat("\\x1b", (stderrHeadBytes-3)/4) + "..."},
	} {
		got := stderrHead([]byte(tc.in))
		if got != tc.want {
			t.Errorf("stderrHead(%q) = %q; want %q", tc.in, got, tc.want)
		}
		if len(got) > stderrHeadBytes || !utf8.ValidString(got) || strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("stderrHead(%q) = %q: too long, invalid UTF-8 or a control character", tc.in, got)
		}
	}
}

func TestMDAStderrBoundedReason(t *testing.T) {
	long := strings.Repeat("x", 10000)
	d, _ := newTestMDA(t, []string{mdaScript(t, "status.sh")}, MDAOptions{}, "CODE=1", "STDERR="+long+"\n"+long)
	err := d.Deliver(context.Background(), mdaMessage("a: b\r\n\r\n"), "", []Recipient{{}}, nil)[0]
	var de *Error
	// 300 is what X-Popfetch-Reason keeps (fetch.toPostmaster).
	if !errors.As(err, &de) || len(de.Reason) > 300 || !de.Permanent || !strings.HasSuffix(de.Reason, "xxx...") {
		t.Fatalf("Deliver = %v; want permanent with a reason ≤ 300 bytes ending in \"...\"", err)
	}
}

// processGone reports whether pid no longer runs (absent or a zombie
// waiting for init to reap it).
func mdaProcessGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

func mdaChildPid(t *testing.T, out string) int {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; {
		b, err := os.ReadFile(filepath.Join(out, "child"))
		if err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper pid not recorded: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mdaWaitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !mdaProcessGone(pid); {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("helper %d survived the process-group kill", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMDATimeoutKillsGroup(t *testing.T) {
	d, out := newTestMDA(t, []string{mdaScript(t, "hang.sh")}, MDAOptions{Timeout: 300 * time.Millisecond})
	start := time.Now()
	err := d.Deliver(context.Background(), mdaMessage("Subject: x\r\n\r\nbody\r\n"), "", []Recipient{{}}, nil)[0]
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Deliver took %v; want about 300ms", el)
	}
	var de *Error
	if !errors.As(err, &de) || de.Permanent || !strings.Contains(de.Reason, "killed after 300ms") {
		t.Fatalf("Deliver = %v; want temporary timeout", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver = %v; want it to wrap context.DeadlineExceeded", err)
	}
	mdaWaitGone(t, mdaChildPid(t, out))
}

func TestMDACancel(t *testing.T) {
	d, out := newTestMDA(t, []string{mdaScript(t, "hang.sh")}, MDAOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the MDA is running (its helper recorded), or after 2s.
		for i := 0; i < 200; i++ {
			if _, err := os.Stat(filepath.Join(out, "child")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	errs := d.Deliver(ctx, mdaMessage("Subject: x\r\n\r\nbody\r\n"), "", []Recipient{{}, {}}, nil)
	for i, err := range errs {
		if err == nil || IsPermanent(err) || !errors.Is(err, context.Canceled) {
			t.Errorf("Deliver[%d] = %v; want temporary, cancelled", i, err)
		}
	}
	mdaWaitGone(t, mdaChildPid(t, out))
}

// An MDA that exits, by itself, while a helper it forked runs on: the
// helper is killed with the rest of the process group, whether it holds
// stderr open or not, and whatever the MDA's status.
func TestMDALingeringHelper(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		ok   bool
	}{
		{"holdsStderr", nil, true},
		{"detached", []string{"DETACH=1"}, true},
		{"exit1", []string{"CODE=1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A timeout kill or a WaitDelay that outlasts the helper
			// must not be what ends it.
			d, out := newTestMDA(t, []string{mdaScript(t, "lingering.sh")}, MDAOptions{Timeout: time.Minute}, tc.env...)
			d.waitDelay = 200 * time.Millisecond
			err := d.Deliver(context.Background(), mdaMessage("Subject: x\r\n\r\nbody\r\n"), "", []Recipient{{}}, nil)[0]
			if tc.ok != (err == nil) {
				t.Errorf("Deliver = %v; want ok=%v", err, tc.ok)
			}
			if errors.Is(err, exec.ErrWaitDelay) {
				t.Errorf("Deliver = %v; the helper should have died with its group, not been waited out", err)
			}
			mdaWaitGone(t, mdaChildPid(t, out))
		})
	}
}

func TestMDAUnreadInput(t *testing.T) {
	for _, size := range []int{10, 1 << 20} {
		d, _ := newTestMDA(t, []string{mdaScript(t, "noread.sh")}, MDAOptions{})
		raw := "Subject: x\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", size/18+1)
		err := d.Deliver(context.Background(), mdaMessage(raw), "", []Recipient{{}}, nil)[0]
		var de *Error
		if !errors.As(err, &de) || de.Permanent || !strings.Contains(de.Reason, "without reading") {
			t.Errorf("size %d: Deliver = %v; want temporary, input not read", size, err)
		}
	}
}

func TestMDAArgumentInjection(t *testing.T) {
	phpMailer := `"attacker\" -oQ/tmp/ -X/var/www/x.php some"@email.com`
	for _, tc := range []struct {
		name   string
		rcpt   Recipient
		sender string
		want   string // the single argv element, "" = rejected
	}{
		{"userOption", Recipient{User: "-oQ/tmp"}, "s@x", ""},
		{"userSlash", Recipient{User: "a/b"}, "s@x", ""},
		{"userDotDot", Recipient{User: ".."}, "s@x", ""},
		{"userDot", Recipient{User: "."}, "s@x", ""},
		{"userNUL", Recipient{User: "a\x00b"}, "s@x", ""},
		{"userTab", Recipient{User: "a\tb"}, "s@x", ""},
		{"addressNewline", Recipient{User: "u", Address: "a\nb@x"}, "s@x", ""},
		{"addressCR", Recipient{User: "u", Address: "a\rb@x"}, "s@x", ""},
		{"domainOption", Recipient{User: "u", Address: "a@x", Domain: "-x"}, "s@x", ""},
		// An unsafe sender is informational only: MAILER-DAEMON instead.
		{"senderOption", Recipient{User: "u", Address: "a@x", Domain: "x"}, "-X/var/www/x.php", nullSender},
		{"senderNewline", Recipient{User: "u", Address: "a@x", Domain: "x"}, "a@x\n-X", nullSender},
		{"phpMailer", Recipient{User: "u", Address: "a@x", Domain: "x"}, phpMailer, phpMailer},
		{"spaces", Recipient{User: "u", Address: "a b@x", Domain: "x"}, "s@x", "s@x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := delivertest.NewMDA(t)
			d, _ := newTestMDA(t, stub.Argv("-f", "{sender}", "{user}", "{address}", "{domain}"), MDAOptions{})
			// Unused placeholders are not validated; use them all here.
			if tc.rcpt.Address == "" {
				d.argv = d.argv[:4]
			}
			err := d.Deliver(context.Background(), mdaMessage("a: b\r\n\r\n"), tc.sender, []Recipient{tc.rcpt}, nil)[0]
			if tc.want == "" {
				if !IsPermanent(err) {
					t.Fatalf("Deliver = %v; want permanent rejection", err)
				}
				if runs := stub.Runs(t); len(runs) != 0 {
					t.Fatalf("MDA ran despite the rejection")
				}
				// The reason once: "MDA argument rejected: {user} ...".
				if msg := err.Error(); strings.Count(msg, "MDA argument rejected") != 1 || strings.Count(msg, "{") != 1 {
					t.Errorf("Deliver = %q; want the reason said once", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Deliver = %v; want nil", err)
			}
			got := stub.LastArgv(t)
			want := []string{d.argv[0], "-f", tc.want, tc.rcpt.User, tc.rcpt.Address, tc.rcpt.Domain}
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("argv = %q; want %q (each value exactly one element)", got, want)
			}
		})
	}
}

// FuzzMDAArgs: whatever the values, the argv keeps the template's shape,
// each value lands inside its own element unchanged, and no value that
// could be read as an option or break a line gets through.
func FuzzMDAArgs(f *testing.F) {
	f.Add("joe", "joe@example.com", "example.com", `"attacker\" -oQ/tmp/ -X/var/www/x.php some"@email.com`)
	f.Add("-oQ/tmp", "a\nb@x", "x", "")
	f.Add("..", "{user}", "{sender}", "<>")
	f.Add("a b", "a;rm -rf /@x", "$(id)", "`id`@x")
	tmpl := []string{"/bin/mda", "-f", "{sender}", "--", "{address}", "u={user}@{domain}", "{"}
	d, err := NewMDA(tmpl, MDAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, user, address, domain, sender string) {
		argv, err := d.args(sender, Recipient{User: user, Address: address, Domain: domain})
		if err != nil {
			return
		}
		if sender == "" || sender == "<>" || sender[0] == '-' || len(sender) > mdaMaxValue ||
			strings.ContainsFunc(sender, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			sender = nullSender
		}
		want := []string{"/bin/mda", "-f", sender, "--", address, "u=" + user + "@" + domain, "{"}
		if strings.Join(argv, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("args = %q; want %q", argv, want)
		}
		for _, v := range []string{user, address, domain, sender} {
			if v == "" || v[0] == '-' || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("value %q accepted", v)
			}
		}
		if strings.Contains(user, "/") || user == "." || user == ".." {
			t.Fatalf("user %q accepted", user)
		}
	})
}

// procmailPath returns the real procmail, skipping when it is missing
// unless CI demands the integration tests.
func procmailPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("/usr/bin/procmail")
	if err != nil {
		testutil.Unavailable(t, fmt.Sprintf("procmail not installed (apt-get install procmail): %v", err))
	}
	return p
}

func TestMDAProcmail(t *testing.T) {
	pm := procmailPath(t)
	dir := t.TempDir()
	rc := filepath.Join(dir, "procmailrc")
	if err := os.WriteFile(rc, []byte("DEFAULT="+dir+"/Maildir/\nLOGFILE="+dir+"/log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := NewMDA([]string{pm, "-f", "{sender}", "-m", rc, "{user}", "{address}"}, MDAOptions{Timeout: 4 * time.Second, LocalHost: "mx.local"})
	if err != nil {
		t.Fatal(err)
	}
	m := mdaMessage("From: a@example.org\r\nSubject: procmail test\r\nMessage-ID: <pm1@x>\r\n\r\nhello\r\n")
	errs := d.Deliver(context.Background(), m, "a@example.org", []Recipient{{User: "joe", Address: "joe@example.com", Domain: "example.com"}}, nil)
	if errs[0] != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("Deliver = %v; procmail log:\n%s", errs[0], log)
	}
	msgs := delivertest.MaildirMessages(t, filepath.Join(dir, "Maildir"), "new")
	if len(msgs) != 1 {
		t.Fatalf("Maildir/new has %d files; want 1", len(msgs))
	}
	b := msgs[0]
	for _, w := range []string{"Delivered-To: joe@example.com\n", "Subject: procmail test\n", "\n\nhello\n"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("delivered message lacks %q:\n%s", w, b)
		}
	}

	// A procmailrc that gives up with EX_TEMPFAIL: the mail must stay.
	if err := os.WriteFile(rc, []byte("EXITCODE=75\n:0\n/dev/null\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = d.Deliver(context.Background(), m, "", []Recipient{{User: "joe", Address: "joe@example.com", Domain: "example.com"}}, nil)[0]
	var de *Error
	if !errors.As(err, &de) || de.Permanent || !strings.HasPrefix(de.Reason, "MDA exit 75") {
		t.Fatalf("Deliver with EXITCODE=75 = %v; want temporary", err)
	}
}

// TestMDAProgramCheckedAtUse: an MDA program that another user can
// change (here: other-writable) when the message is delivered is not
// run, and the failure is temporary, so the message stays on the server.
func TestMDAProgramCheckedAtUse(t *testing.T) {
	stub := delivertest.NewMDA(t)
	d, _ := newTestMDA(t, stub.Argv(), MDAOptions{})
	rc := []Recipient{{User: "joe", Address: "joe@example.com", Domain: "example.com"}}
	if errs := d.Deliver(context.Background(), mdaMessage("Subject: x\r\n\r\nx\r\n"), "", rc, nil); errs[0] != nil {
		t.Fatalf("safe program: Deliver = %v", errs)
	}
	if n := len(stub.Runs(t)); n != 1 {
		t.Fatalf("safe program: ran %d times; want 1", n)
	}
	if err := os.Chmod(stub.Path, 0o757); err != nil {
		t.Fatal(err)
	}
	errs := d.Deliver(context.Background(), mdaMessage("Subject: x\r\n\r\nx\r\n"), "", rc, nil)
	var de *Error
	if !errors.As(errs[0], &de) || de.Permanent || !strings.Contains(de.Reason, "writable by every user") {
		t.Fatalf("other-writable program: Deliver = %v; want a temporary error saying why", errs)
	}
	if n := len(stub.Runs(t)); n != 1 {
		t.Fatal("other-writable program: it ran")
	}
}
