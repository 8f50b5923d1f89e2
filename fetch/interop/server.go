// Package interop starts real POP3 servers other than dovecot privately on
// loopback, one instance per test, so that popfetch is tried against the
// servers its users have: GNU mailutils pop3d (maildir, with plain, STLS,
// implicit-TLS and "expire 0" configurations, and on an mbox), popa3d and
// solid-pop3d (both on mbox spools). fetch/dovecottest does the same for
// dovecot.
//
// Every server runs in inetd mode: the harness listens on 127.0.0.1 on a
// port picked by the kernel and starts one server process per connection
// with the accepted socket as its standard input and output, as inetd or
// `socat TCP-LISTEN:port,fork EXEC:...` would. Doing the inetd part here
// instead of in socat means no race for a free port, no shell quoting in
// EXEC addresses, and every server process is our child, killed with its
// process group when the test ends (and by Pdeathsig if the test binary
// dies).
//
// What is private and what is not (the servers run as root, like inetd
// runs them):
//   - mailutils pop3d reads only the configuration file written for the
//     instance (--config-file implies --no-config); users come from a
//     private virtdomain passwd file, mail from a private maildir or mbox,
//     locks go to a private directory.
//   - popa3d and solid-pop3d authenticate through PAM and popa3d reads the
//     compiled-in /var/mail/USER. Each connection runs in its own mount
//     namespace (unshare -m, private propagation) in which a private
//     directory is bind-mounted over /etc/pam.d (a PAM stack whose pam_exec
//     helper checks the instance's password) and, for popa3d, over
//     /var/mail. Nothing outside the namespace sees these mounts.
//   - System users, created on first use if missing (idempotent, as the
//     Debian packages' postinst scripts would): popfetchtest (the mailbox
//     owner, shared with fetch/dovecottest), popa3d (popa3d's privilege
//     separation user; with the empty directory /var/lib/popa3d as its
//     chroot) and spop3d (solid-pop3d refuses to start without it).
//
// popa3d and solid-pop3d conflict with other POP3 servers as packages, so
// CI does not install them: .ci/run fetches the .deb files with
// `apt-get download` and unpacks them with `dpkg -x` below
// /var/cache/popfetch-ci (POPFETCH_INTEROP_DIR overrides the place).
//
// A server that is missing or cannot run skips the test, unless CI=true or
// POPFETCH_REQUIRE_DOVECOT=1, where it fails it: in CI a missing server must
// not turn the suite into silent skips.
package interop

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/popfetch/popfetch/fetch/dovecottest"
	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
)

// TLSMode is how a server offers TLS.
type TLSMode string

const (
	Plain    TLSMode = "plain"    // no TLS at all
	STLS     TLSMode = "stls"     // STLS required before login (RFC 2595)
	Implicit TLSMode = "implicit" // TLS from the first byte (POP3S, RFC 8314)
)

// Server is one running server instance with one mailbox.
type Server struct {
	Name   string // "mailutils", "popa3d", "solid-pop3d"
	Host   string // "127.0.0.1"
	Port   int
	TLS    TLSMode
	CAFile string // PEM of the CA that signed the certificate, when TLS != Plain
	User   string
	Pass   string
	Dir    string // the instance's private directory

	// Added lists the header fields the server inserts into a message it
	// serves (mailutils: X-UIDL); a test drops them from the delivered
	// copy before comparing it with what was stored.
	Added []string
	// Mbox is true for servers on an mbox spool: a body line starting with
	// "From " is stored (and served) quoted as ">From ", and a message is
	// served with a final line end whether or not it had one.
	Mbox bool
	// UnquotesFrom is true for an mbox server that serves a stored
	// ">From " line as "From " (mailutils): it serves the message as it
	// was before it was stored.
	UnquotesFrom bool
	// ServesSeparator is true for a server that serves the empty line
	// that ends a message in an mbox as the message's last line
	// (solid-pop3d).
	ServesSeparator bool

	box     mailbox
	ln      net.Listener
	argv    []string
	env     []string
	logFile string

	mu    sync.Mutex
	procs map[*exec.Cmd]bool // running sessions, guarded by mu
	done  chan struct{}      // closed when the accept loop ends
}

// mailbox is the server's mail store: an mbox, or a Maildir
// (dovecottest.MaildirAt).
type mailbox interface {
	Put(t testing.TB, msgs ...[]byte)
	Count(t testing.TB) int
	Messages(t testing.TB) [][]byte
}

// Served returns what the server serves for a stored message, with LF
// line ends. POP3 carries a message as lines, so one stored without a
// final line end is served with one.
func (s *Server) Served(msg []byte) []byte {
	if s.Mbox && !s.UnquotesFrom {
		b := MboxStored(msg)
		if s.ServesSeparator {
			b = append(b, '\n')
		}
		return b
	}
	lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if !bytes.HasSuffix(lf, []byte("\n")) {
		lf = append(lf, '\n')
	}
	return lf
}

// Put stores raw messages in the mailbox, in order. Call it only while no
// session runs (between polls).
func (s *Server) Put(t testing.TB, msgs ...[]byte) {
	t.Helper()
	s.box.Put(t, msgs...)
}

// settle waits until no session process runs: a client may hang up
// right after QUIT without reading the reply (popfetch does when it
// marked nothing for deletion), and the server's UPDATE (an mbox server
// rewrites its file) may still be going on when the client is done.
func (s *Server) settle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.procs)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("interop: %d %s sessions still running after 10s", n, s.Name)
		}
		time.Sleep(time.Millisecond)
	}
}

// Count returns the number of messages in the mailbox, once no session
// runs.
func (s *Server) Count(t testing.TB) int {
	t.Helper()
	s.settle(t)
	return s.box.Count(t)
}

// Stored returns the raw messages the server holds, as stored (an mbox
// message without its separator line), in no particular order.
func (s *Server) Stored(t testing.TB) [][]byte {
	t.Helper()
	s.settle(t)
	return s.box.Messages(t)
}

// Log returns what the server processes wrote to stderr.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// cacheDir is where .ci/run unpacks the servers that are not installed as
// packages.
func cacheDir() string {
	if d := os.Getenv("POPFETCH_INTEROP_DIR"); d != "" {
		return d
	}
	return "/var/cache/popfetch-ci"
}

// unavailable skips the test, or fails it where the servers are required.
func unavailable(t testing.TB, server, why string) {
	t.Helper()
	msg := fmt.Sprintf("interop: %s: %s; run as root after `bash .ci/run` has installed it (apt-get install mailutils-pop3d; popa3d and solid-pop3d: apt-get download + dpkg -x into %s)", server, why, cacheDir())
	testutil.Unavailable(t, msg)
}

// newServer makes the instance directory and the certificates; the caller
// fills in the command and starts it.
func newServer(t testing.TB, name string, mode TLSMode) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, name, "not running as root")
	}
	dir, err := os.MkdirTemp("", "popfetch-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	// The mailbox owner and popa3d's user must traverse it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{Name: name, Host: "127.0.0.1", TLS: mode, Dir: dir,
		logFile: filepath.Join(dir, "server.log"), procs: map[*exec.Cmd]bool{}}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("%s stderr (%s):\n%s", name, s.logFile, tail(s.Log(), 4000))
		}
		if os.Getenv("POPFETCH_KEEP_DOVECOT") == "" {
			os.RemoveAll(dir)
		} else {
			t.Logf("interop: kept %s (POPFETCH_KEEP_DOVECOT)", dir)
		}
	})
	if mode != Plain {
		caPEM, crt, key, err := pop3test.NewCertPEM("127.0.0.1", "localhost")
		if err != nil {
			t.Fatal(err)
		}
		s.CAFile = filepath.Join(dir, "ca.crt")
		for _, f := range []struct {
			name string
			data []byte
			mode os.FileMode
		}{{"ca.crt", caPEM, 0o644}, {"server.crt", crt, 0o644}, {"server.key", key, 0o600}} {
			if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

// mailOwner returns the name, uid and gid of the unprivileged user that
// owns the mailboxes.
func mailOwner(t testing.TB) (string, int, int) {
	t.Helper()
	uid, gid, err := dovecottest.MailUser()
	if err != nil {
		t.Fatalf("interop: mail user: %v", err)
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		t.Fatalf("interop: mail user: %v", err)
	}
	return u.Username, uid, gid
}

var sysUserMu sync.Mutex

// systemUser creates a system user that a server insists on, if missing:
// no home directory, no login shell, no password. useradd locks
// /etc/passwd; a concurrent creator makes it fail, so look again.
func systemUser(name string, useraddArgs ...string) error {
	sysUserMu.Lock()
	defer sysUserMu.Unlock()
	var out []byte
	for i := 0; i < 10; i++ {
		if _, err := user.Lookup(name); err == nil {
			return nil
		}
		args := append([]string{"--system", "--no-create-home", "--shell", "/usr/sbin/nologin"}, useraddArgs...)
		out, _ = exec.Command("useradd", append(args, name)...).CombinedOutput()
		time.Sleep(time.Duration(20*(i+1)) * time.Millisecond)
	}
	if _, err := user.Lookup(name); err == nil {
		return nil
	}
	return fmt.Errorf("useradd %s: %s", name, bytes.TrimSpace(out))
}

// start listens on a free loopback port and serves each connection with a
// new process running s.argv.
func (s *Server) start(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(s.Host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.Port = ln.Addr().(*net.TCPAddr).Port
	s.done = make(chan struct{})
	go s.serve()
}

func (s *Server) serve() {
	defer close(s.done)
	// Pdeathsig fires when the thread that forked exits: fork from one
	// locked thread that lives as long as the listener.
	runtime.LockOSThread()
	log, err := os.OpenFile(s.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer log.Close()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			fmt.Fprintf(log, "interop: %v\n", err)
			continue
		}
		cmd := exec.Command(s.argv[0], s.argv[1:]...)
		cmd.Env = s.env
		cmd.Dir = s.Dir
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		s.mu.Lock()
		err = cmd.Start()
		if err == nil {
			s.procs[cmd] = true
		}
		s.mu.Unlock()
		f.Close()
		if err != nil {
			fmt.Fprintf(log, "interop: %v\n", err)
			continue
		}
		go func() {
			cmd.Wait()
			s.mu.Lock()
			delete(s.procs, cmd)
			s.mu.Unlock()
		}()
	}
}

// stop closes the listener and kills every session still running.
func (s *Server) stop() {
	if s.ln == nil {
		return
	}
	s.ln.Close()
	<-s.done
	s.mu.Lock()
	for cmd := range s.procs {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	s.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.procs)
		s.mu.Unlock()
		if n == 0 {
			break
		}
	}
	s.ln = nil
}

// WaitIdle waits until no session process runs: a server may still be
// rewriting its mailbox after the client saw the reply to QUIT.
func (s *Server) WaitIdle(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.procs)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("interop: %s: %d sessions still running after 10 s", s.Name, n)
		}
	}
}

// greeting connects once and returns the server's first line: only the
// greeting proves the server process runs and answers.
func (s *Server) greeting() (string, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if s.TLS == Implicit {
		// The greeting comes after the handshake, which also proves the
		// certificate chain and name that popfetch will verify.
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(s.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(ca) {
			return "", fmt.Errorf("CA file %s: %v", s.CAFile, err)
		}
		tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			return "", fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	var b [512]byte
	n, err := c.Read(b[:])
	line := string(b[:n])
	if err != nil && n == 0 {
		return "", fmt.Errorf("no greeting: %w", err)
	}
	if !strings.HasPrefix(line, "+OK") {
		return line, errors.New("greeting is not +OK")
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return strings.TrimSpace(line), nil
}

func (s *Server) checkStarted(t testing.TB) {
	t.Helper()
	if g, err := s.greeting(); err != nil {
		t.Fatalf("interop: %s on port %d: %v (%q)\nstderr:\n%s", s.Name, s.Port, err, g, tail(s.Log(), 3000))
	}
	s.WaitIdle(t)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func writeFile(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func mkdirOwned(t testing.TB, uid, gid int, mode os.FileMode, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}
