package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/popfetch/popfetch/rcfile"
)

type fakeSender struct {
	mu   sync.Mutex
	fail map[string]int // target -> failures left
	sent []string       // "target event condition"
}

func (f *fakeSender) Send(_ context.Context, n Notice, _ *rcfile.Alert, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[target] > 0 {
		f.fail[target]--
		return errors.New("disk full")
	}
	f.sent = append(f.sent, target+" "+string(n.Event)+" "+string(n.Condition))
	return nil
}

func (f *fakeSender) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

func testConfig(dir string) (*rcfile.Config, []*rcfile.Account) {
	acct := &rcfile.Account{Name: "work", Interval: 5 * time.Minute}
	cfg := &rcfile.Config{
		Accounts: []*rcfile.Account{acct},
		Alert:    &rcfile.Alert{Maildir: filepath.Join(dir, "alerts"), Command: []string{"/bin/true"}},
	}
	return cfg, cfg.Accounts
}

// TestAlerterQueue: a notice whose target fails stays queued, is retried
// with backoff and sent once; the other target is not sent twice; the
// state file is 0600 and a new Alerter on it raises nothing again.
func TestAlerterQueue(t *testing.T) {
	dir := t.TempDir()
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	fs := &fakeSender{fail: map[string]int{"maildir": 2}}
	a := New(Options{StateDir: dir, Host: "mx.example", Sender: fs, Now: clock})
	a.started = true // as Run does
	cfg, owned := testConfig(dir)
	a.Configure(cfg, owned)
	a.Polled(Poll{Account: "work", At: clock(), Err: errAuth, Held: true})
	ctx := context.Background()
	a.sendDue(ctx) // maildir fails once; command sent
	if got := fs.got(); len(got) != 1 || got[0] != "command raised auth-hold" {
		t.Fatalf("sent %q", got)
	}
	if a.Pending() != 1 {
		t.Fatalf("pending %d, want 1", a.Pending())
	}
	a.sendDue(ctx) // not due yet: nothing happens
	advance(retryMin)
	a.sendDue(ctx) // fails again
	advance(retryMin)
	a.sendDue(ctx) // still backing off (2×retryMin)
	advance(retryMin)
	a.sendDue(ctx)
	if got := fs.got(); len(got) != 2 || got[1] != "maildir raised auth-hold" {
		t.Fatalf("sent %q", got)
	}
	if a.Pending() != 0 {
		t.Fatalf("pending %d, want 0", a.Pending())
	}
	fi, err := os.Stat(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}

	// A restart: the hold is still active and the next held poll says
	// nothing new; the success clears it once.
	b := New(Options{StateDir: dir, Host: "mx.example", Sender: fs, Now: clock})
	b.started = true // as Run does
	b.Configure(cfg, owned)
	if act := b.Active(); len(act) != 1 || act[0].Condition != AuthHold || act[0].Account != "work" {
		t.Fatalf("active after restart %+v", act)
	}
	b.Polled(Poll{Account: "work", At: clock(), Err: errAuth, Held: true})
	if b.Pending() != 0 {
		t.Fatalf("a held poll after the restart queued %d notices", b.Pending())
	}
	b.Polled(Poll{Account: "work", At: clock()})
	b.sendDue(ctx)
	want := []string{"command raised auth-hold", "maildir raised auth-hold", "maildir cleared auth-hold", "command cleared auth-hold"}
	if got := fs.got(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("sent %q\nwant %q", got, want)
	}
}

// TestAlerterQueueSurvivesRestart: a notice not yet sent is sent by the
// next daemon.
func TestAlerterQueueSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	fs := &fakeSender{fail: map[string]int{"maildir": 1, "command": 1}}
	clock := func() time.Time { return t0 }
	a := New(Options{StateDir: dir, Sender: fs, Now: clock})
	a.started = true // as Run does
	cfg, owned := testConfig(dir)
	a.Configure(cfg, owned)
	a.Reloaded(t0, false, []string{"rc:1:1: error: x"})
	a.sendDue(context.Background())
	if len(fs.got()) != 0 {
		t.Fatal("sent despite failures")
	}
	b := New(Options{StateDir: dir, Sender: fs, Now: func() time.Time { return t0.Add(time.Hour) }})
	b.started = true // as Run does
	b.Configure(cfg, owned)
	b.sendDue(context.Background())
	if got := fs.got(); len(got) != 2 {
		t.Errorf("after restart sent %q, want both targets", got)
	}
}

func TestCompose(t *testing.T) {
	n := Notice{ID: "alert.1.abc", Event: Raised, Account: "work", Condition: AuthHold, Since: t0, At: t0, Detail: "-ERR [AUTH] bad\npassword"}
	raw, err := Compose(n, "mx.example", "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("\r\n\r\n")) || bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("not CRLF throughout:\n%s", raw)
	}
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header
	subj, _ := h.Subject()
	if !strings.Contains(subj, "work") || !strings.Contains(subj, "authentication hold") {
		t.Errorf("subject %q", subj)
	}
	from, _ := h.AddressList("From")
	to, _ := h.AddressList("To")
	id, _ := h.MessageID()
	date, _ := h.Date()
	if len(from) != 1 || from[0].Address != "popfetch@mx.example" || len(to) != 1 || to[0].Address != "postmaster@mx.example" ||
		id != "alert.1.abc@mx.example" || !date.Equal(t0) || h.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("header: from %v to %v id %q date %v auto %q", from, to, id, date, h.Get("Auto-Submitted"))
	}
	p, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(p.Body)
	for _, w := range []string{"What to do", "password", "popfetch now"} {
		if !strings.Contains(body.String(), w) {
			t.Errorf("body lacks %q:\n%s", w, body.String())
		}
	}
	var doc Document
	if err := json.Unmarshal(JSON(n, "mx.example"), &doc); err != nil || doc.Account != "work" || doc.Condition != AuthHold || doc.Event != Raised {
		t.Errorf("JSON %+v, %v", doc, err)
	}
}

func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := runCommand(context.Background(), []string{"/bin/sh", "-c", `cat > "$1"`, "sh", out}, []byte(`{"a":1}`+"\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != `{"a":1}`+"\n" {
		t.Errorf("stdin %q", b)
	}
	err := runCommand(context.Background(), []string{"/bin/sh", "-c", "echo nope >&2; exit 3"}, nil)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("err = %v", err)
	}
}

// FuzzStateFile: whatever the state file holds (a torn write cannot
// happen, but a hand edit or a disk error can), the Alerter starts and
// works: at worst it starts afresh.
func FuzzStateFile(f *testing.F) {
	f.Add([]byte(`{"engine":{"active":[{"account":"work","condition":"auth-hold","since":"2026-01-02T03:04:05Z","notified":true}],"accounts":{"work":{"last_ok":"2026-01-02T03:04:05Z"}},"last_raise":{"work/auth-hold":"2026-01-02T03:04:05Z"}},"queue":[{"notice":{"id":"x","event":"raised","condition":"failing"},"target":"maildir"}]}`))
	f.Add([]byte(`{"engine":{"accounts":{"work":null},"last_raise":{"nokey":"2026-01-02T03:04:05Z"}},"queue":[null]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, StateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		a := New(Options{StateDir: dir, Sender: &fakeSender{}, Now: func() time.Time { return t0 }})
		a.started = true
		cfg, owned := testConfig(dir)
		a.Configure(cfg, owned)
		a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
		a.Tick()
		a.sendDue(context.Background())
		a.Active()
	})
}

// TestSendMaildirNoTrace: the real sender files a notice into a Maildir
// with Delivered-To but without the "Received: ... with POP3 (account,
// uid ...)" trace field of a retrieved message: popfetch wrote it.
func TestSendMaildirNoTrace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "alerts")
	n := Notice{ID: "alert.1.abc", Event: Raised, Account: "work", Condition: AuthHold, Since: t0, At: t0, Detail: "bad"}
	al := &rcfile.Alert{Maildir: dir, To: "postmaster@example.com"}
	if err := NewSender("mx.example").Send(context.Background(), n, al, targetMaildir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("new/ = %v, %v; want one file", ents, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "new", ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); strings.Contains(s, "Received:") || strings.Contains(s, "POP3") || !strings.HasPrefix(s, "Delivered-To: postmaster@example.com\n") {
		t.Errorf("notice as filed:\n%s", s)
	}
}

// TestAlerterSlowDiskBlocksNoFeed: while the state file's write hangs
// (a hung state disk), Polled, Reloaded, Configure and Active still
// return at once: the daemon calls them from its scheduler, and an
// alert must never block polling, a reload or `popfetch status`.
func TestAlerterSlowDiskBlocksNoFeed(t *testing.T) {
	dir := t.TempDir()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	old := writeState
	writeState = func(path string, b []byte) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return old(path, b)
	}
	defer func() { writeState = old }()

	a := New(Options{StateDir: dir, Host: "mx.example", Sender: &fakeSender{}, Now: func() time.Time { return t0 }})
	cfg, owned := testConfig(dir)
	a.Configure(cfg, owned)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); close(release); <-done }()

	a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the state file was never written")
	}
	fed := make(chan struct{})
	go func() {
		a.Polled(Poll{Account: "work", At: t0})
		a.Reloaded(t0, false, []string{"rc:1: bad"})
		a.Configure(cfg, owned)
		a.Active()
		a.Pending()
		close(fed)
	}()
	select {
	case <-fed:
	case <-time.After(5 * time.Second):
		t.Fatal("feeding the Alerter blocked while its state file was being written")
	}
	if act := a.Active(); len(act) != 1 || act[0].Condition != ReloadRejected {
		t.Errorf("active %+v, want the rejected reload only", act)
	}
}

// TestAlerterRemovesStaleTemp: a daemon killed while writing the state
// file leaves a temporary file; the next Run removes it, and nothing but
// such a file: not another name, a directory, a symbolic link, or (as
// root) a file another user owns.
func TestAlerterRemovesStaleTemp(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "."+StateFile+".123456")
	keep := map[string]bool{}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(stale)
	for _, n := range []string{StateFile + ".123", ".other.json.123", "." + StateFile + "."} {
		write(filepath.Join(dir, n))
		keep[n] = true
	}
	if err := os.Mkdir(filepath.Join(dir, "."+StateFile+".dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	keep["."+StateFile+".dir"] = true
	if err := os.Symlink(filepath.Join(dir, ".other.json.123"), filepath.Join(dir, "."+StateFile+".link")); err != nil {
		t.Fatal(err)
	}
	keep["."+StateFile+".link"] = true
	if os.Geteuid() == 0 {
		p := filepath.Join(dir, "."+StateFile+".nobody")
		write(p)
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		keep["."+StateFile+".nobody"] = true
	}

	a := New(Options{StateDir: dir, Host: "mx.example", Sender: &fakeSender{}, Now: func() time.Time { return t0 }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.Run(ctx) // returns at once, after its start-up

	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file still there (err %v)", err)
	}
	for n := range keep {
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// blockSender records which alert block each notice went to.
type blockSender struct {
	mu   sync.Mutex
	sent []string // "maildir event condition"
}

func (b *blockSender) Send(_ context.Context, n Notice, al *rcfile.Alert, target string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, filepath.Base(al.Maildir)+" "+string(n.Event)+" "+string(n.Condition))
	return nil
}

// TestAlerterGoneBlockSurvivesRestart: the notices of an account removed
// from the configuration, still queued at a restart, go to the alert
// block the account had, not to the global one.
func TestAlerterGoneBlockSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clock := func() time.Time { return t0 }
	acct := &rcfile.Account{Name: "work", Interval: 5 * time.Minute}
	withWork := &rcfile.Config{
		Accounts:      []*rcfile.Account{acct},
		Alert:         &rcfile.Alert{Maildir: filepath.Join(dir, "global")},
		AccountAlerts: map[string]*rcfile.Alert{"work": {Maildir: filepath.Join(dir, "own")}},
	}
	without := &rcfile.Config{Alert: &rcfile.Alert{Maildir: filepath.Join(dir, "global")}}

	a := New(Options{StateDir: dir, Host: "mx.example", Sender: &blockSender{}, Now: clock})
	a.started = true // as Run does
	a.Configure(withWork, withWork.Accounts)
	a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
	a.Configure(without, nil) // the raise and its recovery notice are queued
	a.save()
	if a.Pending() != 2 {
		t.Fatalf("pending %d, want 2", a.Pending())
	}

	bs := &blockSender{}
	b := New(Options{StateDir: dir, Host: "mx.example", Sender: bs, Now: clock})
	b.started = true
	b.Configure(without, nil)
	b.sendDue(context.Background())
	want := "own raised auth-hold,own cleared auth-hold"
	if got := strings.Join(bs.sent, ","); got != want {
		t.Errorf("sent %q, want %q", got, want)
	}
}

// A state file names no program to run: the alert block a removed
// account had is kept across a restart without its command, however the
// file says it.
func TestAlerterGoneBlockNoCommand(t *testing.T) {
	dir := t.TempDir()
	clock := func() time.Time { return t0 }
	acct := &rcfile.Account{Name: "work", Interval: 5 * time.Minute}
	withWork := &rcfile.Config{
		Accounts:      []*rcfile.Account{acct},
		AccountAlerts: map[string]*rcfile.Alert{"work": {Maildir: filepath.Join(dir, "own"), Command: []string{"/bin/true"}}},
	}
	without := &rcfile.Config{}
	a := New(Options{StateDir: dir, Host: "mx.example", Sender: &blockSender{}, Now: clock})
	a.started = true
	a.Configure(withWork, withWork.Accounts)
	a.Polled(Poll{Account: "work", At: t0, Err: errAuth, Held: true})
	a.Configure(without, nil)
	a.save()
	b := New(Options{StateDir: dir, Host: "mx.example", Sender: &blockSender{}, Now: clock})
	al := b.gone["work"]
	if al == nil || al.Maildir != filepath.Join(dir, "own") {
		t.Fatalf("restored block %+v; want the removed account's, with its maildir", al)
	}
	if al.Command != nil {
		t.Errorf("restored block runs %q from the state file; want no command", al.Command)
	}
}
