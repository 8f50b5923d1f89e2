// Package dovecottest starts a real, private Dovecot (POP3, optionally LMTP)
// for one test, so that integration tests talk to the server popfetch is
// written against instead of to a fake that agrees with our own reading of
// the RFCs.
//
// Every instance lives below its own directory (configuration, base_dir,
// state, log, passwd-file, certificates, mail homes); the system's dovecot
// configuration is never read and the system dovecot, if it runs, is not
// touched. Instances listen on 127.0.0.1 only, on ports picked at start, so
// any number of them can run in parallel, also across test binaries.
//
// Dovecot needs root (its master drops privileges to dovenull, dovecot and
// the mail uid). Without root or without the binaries, Start skips the test,
// unless CI=true or POPFETCH_REQUIRE_DOVECOT=1, where it fails it: in CI a
// missing server must not turn the integration tests into silent skips.
// `sudo bash .ci/run` installs what is needed and runs all tests.
//
//	s := dovecottest.Start(t, dovecottest.Options{LMTP: true})
//	mb := s.AddUser(t, "alice", "secret")
//	mb.Put(t, []byte("Subject: hi\r\n\r\nbody\r\n"))
//	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.PlainPort)) // or s.TLSPort
//	roots := x509.NewCertPool()
//	roots.AppendCertsFromPEM(s.CAPEM) // server name "localhost" or 127.0.0.1
//	// ... fetch as alice/secret, then: mb.Count(t) == 0 after DELE+QUIT
//
// What the real server does, as configured here (dovecot 2.3):
//   - UIDLs are 16 lowercase hex digits, UID then UIDVALIDITY
//     (pop3_uidl_format = %08Xu%08Xv), e.g. "000000016b072337"; messages
//     Put in one call get increasing UIDs in argument order.
//   - LIST sizes count CRLF line ends, also for messages stored with LF.
//   - CAPA before login lists STLS, USER and SASL PLAIN LOGIN APOP
//     SCRAM-SHA-1 SCRAM-SHA-256 (so popfetch's auth = "auto" logs in with
//     SCRAM-SHA-256); after login only TOP UIDL RESP-CODES PIPELINING
//     AUTH-RESP-CODE. The greeting carries an APOP timestamp.
//   - A failed PASS answers "-ERR [AUTH] Authentication failed." after about
//     0.5 s (dovecot's failure delay check interval; the delay itself is 0).
//   - LMTP looks users up by local part: RCPT TO:<alice@example.com>,
//     <alice>, and <alice+tag@any.domain> all deliver to alice's INBOX; an
//     unknown user gets 550. Deliveries are stored with LF line ends and a
//     Return-Path, Delivered-To and Received header prepended.
//
// POPFETCH_KEEP_DOVECOT=1 keeps the instance directory (config, log, mail)
// after the test, for debugging.
package dovecottest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
)

// Options selects what the instance runs besides POP3.
type Options struct {
	// LMTP also runs dovecot's LMTP server (dovecot-lmtpd) on a unix socket
	// and on a loopback TCP port, delivering into the users' Maildirs.
	// RCPT TO:<alice@example.com> and RCPT TO:<alice> both reach user alice.
	LMTP bool
	// ReuseProcesses runs dovecot the way a busy provider does: login
	// processes in "high-performance" mode (service_count = 0, several
	// connections each, some started in advance) and pop3 processes reused
	// across sessions, instead of the default fork and exec of two fresh
	// processes per connection. Benchmarks that measure the client over
	// hundreds of logins use it, so that the server's process start-up
	// does not hide the client's cost.
	ReuseProcesses bool
	// OAuth2IntrospectionURL, when set, adds the SASL mechanisms XOAUTH2
	// and OAUTHBEARER with dovecot's oauth2 passdb, which asks this RFC
	// 7662 endpoint about each token (introspection_mode = post, the
	// "username" attribute names the user, "active" must be true): point
	// it at a package fetch/oauthtest provider's IntrospectURL. The user
	// still needs AddUser (the userdb); the password passdb stays first.
	OAuth2IntrospectionURL string
}

// Server is one running dovecot instance.
type Server struct {
	Host       string // "127.0.0.1"
	PlainPort  int    // POP3 with STLS offered, plaintext auth allowed
	TLSPort    int    // POP3S (implicit TLS)
	CAFile     string // PEM of the throw-away CA that signed the server cert
	CAPEM      []byte
	LMTPSocket string // unix socket path when Options.LMTP
	LMTPAddr   string // "127.0.0.1:port" when Options.LMTP
	Dir        string // the instance's private directory

	conf     string
	logFile  string
	mailUID  int
	mailGID  int
	authGID  int // group of the passwd-file: dovecot's auth process reads it
	mu       sync.Mutex
	users    map[string]bool // names added, guarded by mu
	exited   chan struct{}
	exitErr  error // set before exited is closed
	pid      int
	stopOnce sync.Once
}

type userEntry struct{ name, pass, home string }

// Mailbox is one POP3 user's Maildir.
type Mailbox struct {
	User, Pass string
	Maildir    string

	uid, gid int
}

// Where dovecot's helper binaries live: Debian/Ubuntu use /usr/lib/dovecot,
// Fedora and source builds /usr/libexec/dovecot.
var libexecDirs = []string{"/usr/lib/dovecot", "/usr/libexec/dovecot"}

const howToRun = "run as root with dovecot-pop3d installed: apt-get install dovecot-pop3d dovecot-lmtpd, or bash .ci/run"

// Required reports whether a missing integration server (dovecot, or the
// servers of package interop) is a failure instead of a skip: in CI a
// missing server must not turn the suite into silent skips.
func Required() bool { return testutil.RealPartsRequired() }

// unavailable skips the test, or fails it where dovecot is required.
func unavailable(t testing.TB, why string) {
	t.Helper()
	testutil.Unavailable(t, fmt.Sprintf("dovecottest: %s; %s", why, howToRun))
}

// findDovecot returns the master binary and checks that the protocol
// binaries the options need are installed.
func findDovecot(opts Options) (string, error) {
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		// /usr/sbin is not on every PATH (e.g. sudo -E from a user shell).
		bin = "/usr/sbin/dovecot"
		if _, err := os.Stat(bin); err != nil {
			return "", errors.New("dovecot is not installed")
		}
	}
	need := []string{"pop3"}
	if opts.LMTP {
		need = append(need, "lmtp")
	}
	for _, n := range need {
		found := false
		for _, d := range libexecDirs {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				found = true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("dovecot's %s binary is not installed", n)
		}
	}
	return bin, nil
}

// Start starts dovecot for the test and stops it in t.Cleanup. If dovecot
// cannot run (binary missing, not root), it skips the test, or fails it when
// CI=true or POPFETCH_REQUIRE_DOVECOT=1.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "not running as root")
	}
	bin, err := findDovecot(opts)
	if err != nil {
		unavailable(t, err.Error())
	}
	uid, gid, err := mailUser()
	if err != nil {
		t.Fatalf("dovecottest: mail user: %v", err)
	}

	dir, err := os.MkdirTemp(tempParent(), "popfetch-dovecot-")
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	// MkdirTemp makes 0700; dovenull, dovecot and the mail uid must traverse.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	s := &Server{
		Host:    "127.0.0.1",
		Dir:     dir,
		conf:    filepath.Join(dir, "dovecot.conf"),
		logFile: filepath.Join(dir, "dovecot.log"),
		mailUID: uid,
		mailGID: gid,
		authGID: -1,
		users:   map[string]bool{},
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("dovecot log (%s), last part:\n%s", s.logFile, tail(s.readLog(), 6000))
		}
		if os.Getenv("POPFETCH_KEEP_DOVECOT") == "" {
			os.RemoveAll(dir)
		} else {
			t.Logf("dovecottest: kept %s (POPFETCH_KEEP_DOVECOT)", dir)
		}
	})
	if g, err := user.LookupGroup("dovecot"); err == nil {
		s.authGID, _ = strconv.Atoi(g.Gid)
	}
	for _, d := range []string{"mail", "state", "users.d"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
	}
	if err := s.writeCerts(); err != nil {
		t.Fatalf("dovecottest: certificates: %v", err)
	}
	if opts.LMTP {
		s.LMTPSocket = filepath.Join(dir, "run", "lmtp")
	}

	// Free ports are picked by listening and closing, so another test may
	// grab one before dovecot binds it; dovecot then exits at once with
	// "Address already in use" and we try again with new ports.
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
		n := 2
		if opts.LMTP {
			n = 3
		}
		ports, err := freePorts(n)
		if err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
		s.PlainPort, s.TLSPort = ports[0], ports[1]
		if opts.LMTP {
			s.LMTPAddr = net.JoinHostPort(s.Host, strconv.Itoa(ports[2]))
		}
		if err := os.WriteFile(s.conf, []byte(s.config(opts)), 0o644); err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
		lastErr = s.start(bin, opts)
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortBusy) {
			break
		}
	}
	t.Fatalf("dovecottest: starting dovecot: %v\ndovecot log:\n%s", lastErr, tail(s.readLog(), 6000))
	return nil
}

// tempParent returns the directory to create instances in. Dovecot's unix
// sockets live in base_dir and sun_path holds only 108 bytes, and the
// unprivileged users must be able to traverse the whole chain, so a long or
// private TMPDIR is replaced by /tmp.
func tempParent() string {
	d := os.TempDir()
	if len(d) > 50 {
		return "/tmp"
	}
	for p := d; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if p == "/" || p == "." {
			return d
		}
	}
}

var errPortBusy = errors.New("port already in use")

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l) // kept open until all are picked: no duplicates
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (s *Server) config(opts Options) string {
	var b strings.Builder
	protocols := "pop3"
	if opts.LMTP {
		protocols += " lmtp"
	}
	fmt.Fprintf(&b, `# Generated by popfetch's fetch/dovecottest for one test; not the system config.
instance_name = popfetch-%[1]s
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
protocols = %[3]s
listen = %[4]s
shutdown_clients = yes
# No statistics: nothing reads them, and each process would connect to the
# stats service (one handshake that can hang for 5 s around shutdown).
stats_writer_socket_path =

# The master runs as root but never touches mail as root: logins run as
# dovenull, auth as dovecot, mail processes as the passwd-file's uid, which
# must lie in [first_valid_uid, last_valid_uid].
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = %[5]d
last_valid_uid = %[5]d
first_valid_gid = %[6]d
last_valid_gid = %[6]d

# Loopback test server: USER/PASS in the clear is fine, and a wrong password
# must not cost every negative test dovecot's default 2 s.
disable_plaintext_auth = no
# Every password mechanism popfetch speaks: SCRAM and APOP work from the
# plaintext passdb below ({PLAIN}), and apop puts a timestamp in the
# greeting.
auth_mechanisms = plain login apop scram-sha-1 scram-sha-256
auth_failure_delay = 0
auth_verbose = yes
# username_format=%%n: the POP3 user "alice" and the LMTP recipient
# "alice@example.com" are the same entry. One passwd-file per user (see
# writeUser for why).
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%n %[2]s/users.d/%%n
}
userdb {
  driver = passwd-file
  args = username_format=%%n %[2]s/users.d/%%n
}

mail_location = maildir:~/Maildir
# UIDL = UID + UIDVALIDITY, 8 hex digits each: stable across sessions.
pop3_uidl_format = %%08Xu%%08Xv

# After a failed login, anvil makes the auth process delay every later login
# from the same IP by 2 s and up: one negative test would slow all others.
# mode = 0 disables the penalty socket; the auth process then runs without
# penalties (it ignores a missing anvil-auth-penalty socket).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}

ssl = yes
ssl_cert = <%[2]s/tls/server.crt
ssl_key = <%[2]s/tls/server.key
ssl_min_protocol = TLSv1.2

service pop3-login {
  inet_listener pop3 {
    address = %[4]s
    port = %[7]d
  }
  inet_listener pop3s {
    address = %[4]s
    port = %[8]d
    ssl = yes
  }
}
`, filepath.Base(s.Dir), s.Dir, protocols, s.Host, s.mailUID, s.mailGID, s.PlainPort, s.TLSPort)
	if opts.ReuseProcesses {
		b.WriteString(`
# High-performance mode (dovecot's LoginProcess documentation): each login
# process serves many connections; pop3 processes serve many sessions, which
# is safe here because every mail user has the same uid.
service pop3-login {
  service_count = 0
  process_min_avail = 2
  vsz_limit = 1G
}
service pop3 {
  service_count = 0
  process_min_avail = 2
  client_limit = 1
}
auth_verbose = no
`)
	}
	if opts.OAuth2IntrospectionURL != "" {
		s.writeOAuth2(&b, opts.OAuth2IntrospectionURL)
	}
	if opts.LMTP {
		_, port, _ := net.SplitHostPort(s.LMTPAddr)
		fmt.Fprintf(&b, `
# Deliver RCPT TO:<user+detail@...> to INBOX, not to a "detail" folder.
lmtp_save_to_detail_mailbox = no
postmaster_address = postmaster@example.com
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
  inet_listener lmtp {
    address = %s
    port = %s
  }
}
`, s.Host, port)
	}
	return b.String()
}

// start runs dovecot in the foreground (-F) as our child rather than letting
// it daemonize: we can wait for it (no zombie where PID 1 does not reap), and
// Pdeathsig takes it down with the test binary if that is killed (go test
// -timeout, ^C), so no instance outlives its test.
func (s *Server) start(bin string, opts Options) error {
	out, err := os.Create(filepath.Join(s.Dir, "startup.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(bin, "-F", "-c", s.conf)
	cmd.Stdout, cmd.Stderr = out, out // a file, never a pipe we must drain
	// Own process group: kill can take down every dovecot process at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	exited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked exits, not the
		// process: keep this goroutine's thread alive until dovecot exits.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		s.exitErr = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return err
	}
	s.exited = exited
	s.pid = cmd.Process.Pid

	// Bind errors go to stderr (startup.log). dovecot.log is not searched:
	// it keeps the bind errors of earlier attempts.
	stderr := func() string {
		b, _ := os.ReadFile(out.Name())
		return string(b)
	}
	startupLog := func() string { return stderr() + tail(s.readLog(), 3000) }
	deadline := time.Now().Add(15 * time.Second)
	addrs := []string{s.addr(s.PlainPort), s.addr(s.TLSPort)}
	if opts.LMTP {
		addrs = append(addrs, s.LMTPAddr)
	}
	for _, a := range addrs {
		for {
			select {
			case <-exited:
				if msg := stderr(); strings.Contains(msg, "in use") {
					return fmt.Errorf("%w: %s", errPortBusy, strings.TrimSpace(msg))
				}
				return fmt.Errorf("dovecot exited (%v): %s", s.exitErr, strings.TrimSpace(startupLog()))
			default:
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				s.kill()
				return fmt.Errorf("dovecot did not listen on %s within 15 s: %s", a, startupLog())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Another process may own a port we meant to use (then dovecot exits
	// with a bind error): only dovecot's greeting proves the port is ours.
	if err := s.checkGreeting(); err != nil {
		select {
		case <-exited:
			if strings.Contains(stderr(), "in use") {
				return errPortBusy
			}
		case <-time.After(100 * time.Millisecond):
		}
		s.kill()
		return fmt.Errorf("no POP3 greeting on %s: %v: %s", s.addr(s.PlainPort), err, startupLog())
	}
	return nil
}

func (s *Server) addr(port int) string { return net.JoinHostPort(s.Host, strconv.Itoa(port)) }

func (s *Server) checkGreeting() error {
	c, err := net.DialTimeout("tcp", s.addr(s.PlainPort), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+OK") || !strings.Contains(line, "Dovecot") {
		return fmt.Errorf("greeting %q", line)
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return nil
}

// kill stops the instance. A clean dovecot shutdown takes 1.2 s at best
// (the log process lingers) and 6 s when a login process was just starting
// (it waits for a handshake with the already stopped auth process, then the
// master's kill timeout). This instance's state is thrown away anyway, so
// after a short grace period for the TERM (the master tells its children to
// stop and logs that) the whole process group gets SIGKILL.
func (s *Server) kill() {
	if s.exited == nil {
		return
	}
	select {
	case <-s.exited:
		// Gone already (failed start, or killed before): by now its pid
		// may belong to someone else, so signal nothing.
		return
	default:
	}
	syscall.Kill(s.pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(200 * time.Millisecond):
	}
	// Also after the master exited: children that outlive it would keep
	// files in s.Dir open. The group is ours (Setpgid), led by s.pid.
	syscall.Kill(-s.pid, syscall.SIGKILL)
	<-s.exited
}

func (s *Server) stop() {
	s.stopOnce.Do(s.kill)
}

func (s *Server) readLog() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// Log returns dovecot's log, for failure messages.
func (s *Server) Log(t testing.TB) string {
	t.Helper()
	return s.readLog()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// The mail uid is looked up (or created) once per test binary.
var (
	mailUserMu         sync.Mutex
	mailUIDs, mailGIDs = -1, -1
)

const mailUserName = "popfetchtest"

// MailUser returns the uid and gid of the unprivileged system user that owns
// the test mailboxes (created on first use, see mailUser). Harnesses for
// other servers (fetch/interop) use the same user.
func MailUser() (uid, gid int, err error) { return mailUser() }

// mailUser returns the uid and gid that own the test Maildirs. Dovecot
// refuses to access mail as root, so a dedicated system user is created on
// first use; if that is impossible, nobody will do.
func mailUser() (uid, gid int, err error) {
	mailUserMu.Lock()
	defer mailUserMu.Unlock()
	if mailUIDs >= 0 {
		return mailUIDs, mailGIDs, nil
	}
	lookup := func(name string) (int, int, error) {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, 0, err
		}
		uid, err := strconv.Atoi(u.Uid)
		if err != nil {
			return 0, 0, err
		}
		gid, err := strconv.Atoi(u.Gid)
		return uid, gid, err
	}
	uid, gid, err = lookup(mailUserName)
	// Several test binaries may get here at once; useradd locks
	// /etc/passwd, and a loser sees "already exists" or a busy lock, so
	// look again after each try.
	for i := 0; err != nil && i < 10; i++ {
		if _, lerr := exec.LookPath("useradd"); lerr != nil {
			break
		}
		out, _ := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", mailUserName).CombinedOutput()
		if uid, gid, err = lookup(mailUserName); err != nil {
			err = fmt.Errorf("useradd %s: %s", mailUserName, bytes.TrimSpace(out))
			time.Sleep(time.Duration(50*(i+1)) * time.Millisecond)
		}
	}
	if err != nil {
		if uid, gid, err = lookup("nobody"); err != nil {
			return 0, 0, fmt.Errorf("no user %s and no nobody: %v", mailUserName, err)
		}
	}
	if uid == 0 {
		return 0, 0, errors.New("mail user is root")
	}
	mailUIDs, mailGIDs = uid, gid
	return uid, gid, nil
}
