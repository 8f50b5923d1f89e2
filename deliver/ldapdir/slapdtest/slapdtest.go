// Package slapdtest starts a real, private OpenLDAP slapd for one test, so
// that the directory client is tested against the server an office runs
// (or the closest free stand-in for Active Directory) instead of a fake
// that agrees with our own reading of RFC 4511.
//
// Every instance lives below its own temporary directory (slapd.conf, the
// mdb database, certificates, log); the system's slapd configuration is
// never read and the system slapd, if any, is not touched. An instance
// listens on 127.0.0.1 only: ldaps:// on one port (TLS from the start) and
// ldap:// on another (StartTLS offered, unless Options.NoTLS).
//
// Without slapd, slapadd or ldap-utils (ldapmodify, ldapdelete), Start
// skips the test, unless CI=true or POPFETCH_REQUIRE_DOVECOT=1, where it
// fails it (the same rule as fetch/dovecottest): in CI a missing server
// must not turn the integration tests into silent skips. `bash .ci/run`
// installs slapd and ldap-utils.
//
//	s := slapdtest.Start(t, slapdtest.Options{LDIF: slapdtest.ADUser("alice", "Alice", 512, "alice@example.com")})
//	// ldapdir.Config{URL: s.URL(), RootCAs: s.RootCAs(), BindDN: s.BindDN(), Password: s.Password(), BaseDN: s.BaseDN()}
//	s.Add(t, moreLDIF); s.Delete(t, dn); s.Stop(t); s.Restart(t)
//
// The tree holds both shapes the client must read:
//   - Active Directory: objectClass user (and group) from Debian's
//     /etc/ldap/schema/msuser.schema, with sAMAccountName, proxyAddresses,
//     userAccountControl, objectCategory and member. OpenLDAP implements
//     AD's bitwise-AND matching rule (1.2.840.113556.1.4.803), so the
//     disabled-user clause of the AD default filter works as in AD. One
//     change to the stock schema is needed (see adSchema): AD resolves
//     (objectCategory=person) to the category's DN itself, OpenLDAP has no
//     equality rule for msuser's objectCategory at all, so the filter never
//     matched; here objectCategory is a case-ignore string and AD entries
//     hold "person" (see ADUser).
//   - OpenLDAP: inetOrgPerson with uid and mail, groupOfNames.
//
// The read-only bind user BindDN may read everything but passwords; it is
// subject to a size limit (Options.SizeLimit, default 500 like slapd's own
// default) that only a paged search gets past. Anonymous binds may search
// but find nothing.
//
// Where AppArmor enforces Debian's profile for /usr/sbin/slapd, slapd may
// not read an instance's files below the temporary directory; the start
// then fails with slapd's own message in the test log.
//
// POPFETCH_KEEP_SLAPD=1 keeps the instance directory after the test.
package slapdtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/internal/testutil"
)

// The fixed names of every instance.
const (
	Base       = "dc=example,dc=com"
	RootDN     = "cn=admin," + Base
	RootPW     = "root-secret"
	ReaderDN   = "cn=reader," + Base
	ReaderPW   = "reader-secret"
	PeopleBase = "ou=people," + Base
	GroupsBase = "ou=groups," + Base
)

// Options shape one instance.
type Options struct {
	// LDIF is loaded with slapadd before slapd starts (fast, no network):
	// entries below Base. Base itself, ou=people, ou=groups and the reader
	// exist already.
	LDIF string
	// SizeLimit is the reader's soft and hard size limit for a search
	// without paging (0 = 500); paged searches are unlimited in total.
	SizeLimit int
	// NoTLS runs slapd without any TLS configuration: the ldap:// port
	// refuses StartTLS and there is no ldaps:// port (URL returns "").
	NoTLS bool
}

// Server is one running slapd.
type Server struct {
	Dir     string // the instance's private directory
	CAFile  string // PEM of the throw-away CA that signed the server cert
	CAPEM   []byte
	TLSPort int // ldaps:// (0 with NoTLS)
	Port    int // ldap:// (StartTLS unless NoTLS)

	opts    Options
	conf    string
	logFile string
	bin     string

	mu      sync.Mutex
	exited  chan struct{}
	exitErr error
	pid     int
}

const howToRun = "run with slapd and ldap-utils installed: apt-get install slapd ldap-utils, or bash .ci/run"

// Required reports whether a missing slapd is a failure instead of a skip
// (CI=true or POPFETCH_REQUIRE_DOVECOT=1, as for fetch/dovecottest).
func Required() bool { return testutil.RealPartsRequired() }

func unavailable(t testing.TB, why string) {
	t.Helper()
	testutil.Unavailable(t, fmt.Sprintf("slapdtest: %s; %s", why, howToRun))
}

// lookPath finds a binary also where PATH lacks /usr/sbin (sudo -E).
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed", name)
}

// Start starts slapd for the test and stops it in t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	var bin string
	for _, name := range []string{"slapd", "slapadd", "ldapmodify", "ldapdelete"} {
		p, err := lookPath(name)
		if err != nil {
			unavailable(t, err.Error())
		}
		if name == "slapd" {
			bin = p
		}
	}
	if _, err := os.Stat(msuserSchema); err != nil {
		unavailable(t, "no "+msuserSchema+" (Debian's slapd package ships it)")
	}
	dir, err := os.MkdirTemp("", "popfetch-slapd-")
	if err != nil {
		t.Fatalf("slapdtest: %v", err)
	}
	s := &Server{
		Dir:     dir,
		opts:    opts,
		conf:    filepath.Join(dir, "slapd.conf"),
		logFile: filepath.Join(dir, "slapd.log"),
		bin:     bin,
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			b, _ := os.ReadFile(s.logFile)
			t.Logf("slapd log (%s), last part:\n%s", s.logFile, tail(string(b), 4000))
		}
		if os.Getenv("POPFETCH_KEEP_SLAPD") == "" {
			os.RemoveAll(dir)
		} else {
			t.Logf("slapdtest: kept %s (POPFETCH_KEEP_SLAPD)", dir)
		}
	})
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatalf("slapdtest: %v", err)
	}
	if err := s.writeSchema(); err != nil {
		t.Fatalf("slapdtest: %v", err)
	}
	if !opts.NoTLS {
		caPEM, certPEM, keyPEM, err := pop3test.NewCertPEM("127.0.0.1", "localhost")
		if err != nil {
			t.Fatalf("slapdtest: certificates: %v", err)
		}
		s.CAPEM = caPEM
		s.CAFile = filepath.Join(dir, "ca.pem")
		for name, b := range map[string][]byte{"ca.pem": caPEM, "server.crt": certPEM, "server.key": keyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatalf("slapdtest: %v", err)
			}
		}
	}
	if err := os.WriteFile(s.conf, []byte(s.config()), 0o600); err != nil {
		t.Fatalf("slapdtest: %v", err)
	}
	s.slapadd(t, s.baseLDIF()+"\n"+opts.LDIF)

	// Free ports are picked by listening and closing, so another process
	// may take one before slapd binds it; slapd then exits at once and we
	// try again with new ports.
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			t.Fatalf("slapdtest: %v", err)
		}
		s.Port, s.TLSPort = ports[0], ports[1]
		if opts.NoTLS {
			s.TLSPort = 0
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortBusy) {
			break
		}
	}
	t.Fatalf("slapdtest: starting slapd: %v", lastErr)
	return nil
}

// URL is the ldaps:// address ("" with NoTLS).
func (s *Server) URL() string {
	if s.TLSPort == 0 {
		return ""
	}
	return "ldaps://127.0.0.1:" + strconv.Itoa(s.TLSPort)
}

// StartTLSURL is the ldap:// address (StartTLS offered unless NoTLS).
func (s *Server) StartTLSURL() string { return "ldap://127.0.0.1:" + strconv.Itoa(s.Port) }

// RootCAs is a pool with the instance's CA (nil with NoTLS).
func (s *Server) RootCAs() *x509.CertPool {
	if s.CAPEM == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(s.CAPEM)
	return p
}

// BindDN, Password and BaseDN are the read-only reader's credentials and
// the tree's suffix.
func (s *Server) BindDN() string   { return ReaderDN }
func (s *Server) Password() string { return ReaderPW }
func (s *Server) BaseDN() string   { return Base }

// msuserSchema is Debian's copy of the AD schema subset.
const msuserSchema = "/etc/ldap/schema/msuser.schema"

// objectCategoryDef matches msuser's objectCategory definition (DN syntax,
// no equality rule).
var objectCategoryDef = regexp.MustCompile(`(?s)attributetype \( (MSADat4:782)\s+NAME 'objectCategory'\s+SYNTAX '1\.3\.6\.1\.4\.1\.1466\.115\.121\.1\.12'\s+SINGLE-VALUE \)`)

// writeSchema writes adSchema: msuser.schema with objectCategory made a
// case-ignore string, so that AD's (objectCategory=person) matches entries
// holding "person", the way AD matches it against the category's DN.
func (s *Server) writeSchema() error {
	b, err := os.ReadFile(msuserSchema)
	if err != nil {
		return err
	}
	if len(objectCategoryDef.FindAllIndex(b, -1)) != 1 {
		return fmt.Errorf("%s: objectCategory's definition is not the expected one (DN syntax, no equality); update slapdtest", msuserSchema)
	}
	b = objectCategoryDef.ReplaceAll(b, []byte("attributetype ( $1\n\tNAME 'objectCategory'\n\tEQUALITY caseIgnoreMatch\n\tSYNTAX '1.3.6.1.4.1.1466.115.121.1.15'\n\tSINGLE-VALUE )"))
	return os.WriteFile(filepath.Join(s.Dir, "msuser.schema"), b, 0o600)
}

func (s *Server) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Generated by popfetch's deliver/ldapdir/slapdtest for one test; not the system config.
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
# msuser.schema uses nis.schema's homeDirectory.
include /etc/ldap/schema/nis.schema
include %[1]s/msuser.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
`, s.Dir)
	if !s.opts.NoTLS {
		fmt.Fprintf(&b, `TLSCertificateFile %[1]s/server.crt
TLSCertificateKeyFile %[1]s/server.key
TLSCACertificateFile %[1]s/ca.pem
TLSProtocolMin 3.3
`, s.Dir)
	}
	limit := s.opts.SizeLimit
	if limit <= 0 {
		limit = 500
	}
	fmt.Fprintf(&b, `
database mdb
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
maxsize 104857600

# A search without paging stops at the limit; a paged one gets everything
# (size.prtotal defaults to the hard limit otherwise).
limits dn.exact="%[5]s" size.soft=%[6]d size.hard=%[6]d size.prtotal=unlimited

# Anonymous may search (so a search under the base succeeds) but reads
# nothing: it finds zero entries, not an error.
access to attrs=userPassword
	by anonymous auth
	by * none
access to dn.base="%[2]s" attrs=entry
	by dn.exact="%[5]s" read
	by * search
access to *
	by dn.exact="%[5]s" read
	by * none
`, s.Dir, Base, RootDN, RootPW, ReaderDN, limit)
	return b.String()
}

func (s *Server) baseLDIF() string {
	return fmt.Sprintf(`dn: %[1]s
objectClass: dcObject
objectClass: organization
o: popfetch test
dc: example
description: %[2]s

dn: %[3]s
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: %[4]s

dn: %[5]s
objectClass: organizationalUnit
ou: people

dn: %[6]s
objectClass: organizationalUnit
ou: groups
`, Base, filepath.Base(s.Dir), ReaderDN, ReaderPW, PeopleBase, GroupsBase)
}

func (s *Server) slapadd(t testing.TB, ldif string) {
	t.Helper()
	path := filepath.Join(s.Dir, "data.ldif")
	if err := os.WriteFile(path, []byte(ldif), 0o600); err != nil {
		t.Fatalf("slapdtest: %v", err)
	}
	bin, err := lookPath("slapadd")
	if err != nil {
		t.Fatalf("slapdtest: %v", err)
	}
	// -q: no consistency checks beyond the schema (fast); -w writes the
	// contextCSN like a normal add would.
	out, err := exec.Command(bin, "-q", "-f", s.conf, "-l", path).CombinedOutput()
	if err != nil {
		t.Fatalf("slapdtest: slapadd: %v\n%s", err, out)
	}
}

var errPortBusy = errors.New("port already in use")

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
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start runs slapd in the foreground (-d 0) as our child, so that we can
// wait for it and Pdeathsig takes it down with the test binary.
func (s *Server) start() error {
	hosts := s.StartTLSURL() + "/"
	if s.TLSPort != 0 {
		hosts = s.URL() + "/ " + hosts
	}
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	mark, _ := logf.Seek(0, 2)
	cmd := exec.Command(s.bin, "-f", s.conf, "-h", hosts, "-d", "0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	exited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking thread exits: keep it.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	if err := <-started; err != nil {
		return err
	}
	s.mu.Lock()
	s.exited, s.pid = exited, cmd.Process.Pid
	s.mu.Unlock()
	logSince := func() string {
		b, _ := os.ReadFile(s.logFile)
		if int64(len(b)) > mark {
			b = b[mark:]
		}
		return strings.TrimSpace(string(b))
	}
	// Ready when the instance answers as itself: the root DN reads the
	// base entry, whose description names this instance's directory (a
	// port taken by another slapd would answer differently).
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			if msg := logSince(); strings.Contains(msg, "Address already in use") || strings.Contains(msg, "errno=98") {
				return fmt.Errorf("%w: %s", errPortBusy, msg)
			}
			return fmt.Errorf("slapd exited (%v): %s", s.exitErr, logSince())
		default:
		}
		err := s.ping()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("slapd not ready within 10 s (%v): %s", err, logSince())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) ping() error {
	c, err := ldap.DialURL(s.StartTLSURL(), ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(2 * time.Second)
	if err := c.Bind(RootDN, RootPW); err != nil {
		return err
	}
	res, err := c.Search(ldap.NewSearchRequest(Base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 2, false, "(objectClass=*)", []string{"description"}, nil))
	if err != nil {
		return err
	}
	if len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("description") != filepath.Base(s.Dir) {
		return errors.New("another server answers on the port")
	}
	if s.TLSPort != 0 {
		cfg := &tls.Config{RootCAs: s.RootCAs(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.TLSPort)), cfg)
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// kill stops slapd at once (SIGKILL: mdb is crash-safe, and a restart
// must show the data as it was).
func (s *Server) kill() {
	s.mu.Lock()
	exited, pid := s.exited, s.pid
	s.mu.Unlock()
	if exited == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
}

// Stop stops slapd; clients then get "connection refused". Restart starts
// it again on the same ports with the same data.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.kill()
}

// Restart starts a stopped (or running) slapd again, same ports and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.kill()
	var err error
	// The ports were ours a moment ago; a short retry covers a listener
	// another test grabbed in between only in the rarest case.
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(); err == nil || !errors.Is(err, errPortBusy) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("slapdtest: restart: %v", err)
	}
}

// Pause freezes slapd (SIGSTOP): the kernel still accepts connections on
// its ports, but nothing answers, like a hung or overloaded server; a
// client is bounded only by its own timeout. Resume lets it run again.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
}

// Resume continues a paused slapd (SIGCONT).
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	if err := syscall.Kill(-pid, sig); err != nil {
		t.Fatalf("slapdtest: %v to slapd: %v", sig, err)
	}
}

// ldapTool runs ldapmodify or ldapdelete as the root DN over ldap://
// (plain: loopback, test data only).
func (s *Server) ldapTool(t testing.TB, tool string, stdin string, args ...string) {
	t.Helper()
	bin, err := lookPath(tool)
	if err != nil {
		t.Fatalf("slapdtest: %v", err)
	}
	argv := append([]string{"-x", "-H", s.StartTLSURL(), "-D", RootDN, "-w", RootPW}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null", "LDAPRC=/dev/null", "LDAPNOINIT=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("slapdtest: %s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
}

// Add adds the LDIF entries (no changetype lines needed).
func (s *Server) Add(t testing.TB, ldif string) {
	t.Helper()
	s.ldapTool(t, "ldapmodify", ldif, "-a")
}

// Modify applies LDIF change records (changetype: modify ...).
func (s *Server) Modify(t testing.TB, ldif string) {
	t.Helper()
	s.ldapTool(t, "ldapmodify", ldif)
}

// Delete deletes one entry.
func (s *Server) Delete(t testing.TB, dn string) {
	t.Helper()
	s.ldapTool(t, "ldapdelete", "", dn)
}

// Log returns slapd's output so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// ADUser is the LDIF of an Active Directory user below PeopleBase: cn,
// sAMAccountName sam (omitted when ""), userAccountControl uac (512 = normal
// account, 514 = disabled), mail (omitted when ""), and proxyAddresses as
// given (e.g. "SMTP:a@example.com", "smtp:b@example.com", "X500:/o=...").
func ADUser(sam, cn string, uac int, mail string, proxyAddresses ...string) string {
	var b strings.Builder
	b.WriteString(attr("dn", ADUserDN(cn)))
	b.WriteString("objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n")
	// msuser.schema's classes lack sAMAccountName (AD's securityPrincipal
	// auxiliary class is not in it): extensibleObject allows it.
	b.WriteString("objectClass: extensibleObject\n")
	b.WriteString(attr("cn", cn) + attr("sn", cn))
	b.WriteString("instanceType: 4\nnTSecurityDescriptor: AA==\nobjectCategory: person\n")
	if sam != "" {
		b.WriteString(attr("sAMAccountName", sam))
	}
	fmt.Fprintf(&b, "userAccountControl: %d\n", uac)
	if mail != "" {
		b.WriteString(attr("mail", mail))
	}
	for _, p := range proxyAddresses {
		b.WriteString(attr("proxyAddresses", p))
	}
	return b.String() + "\n"
}

// ADUserDN is the DN ADUser gives the user cn.
func ADUserDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + PeopleBase }

// ADGroup is the LDIF of an Active Directory group below GroupsBase with
// mail (omitted when "") and member DNs.
func ADGroup(cn, mail string, members ...string) string {
	var b strings.Builder
	b.WriteString(attr("dn", ADGroupDN(cn)))
	b.WriteString("objectClass: top\nobjectClass: group\n")
	b.WriteString(attr("cn", cn))
	b.WriteString("instanceType: 4\nnTSecurityDescriptor: AA==\nobjectCategory: group\ngroupType: -2147483646\n")
	if mail != "" {
		b.WriteString(attr("mail", mail))
	}
	for _, m := range members {
		b.WriteString(attr("member", m))
	}
	return b.String() + "\n"
}

// ADGroupDN is the DN ADGroup and GroupOfNames give the group cn.
func ADGroupDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + GroupsBase }

// InetOrgPerson is the LDIF of an OpenLDAP user below PeopleBase (RDN
// uid) with the mail values given.
func InetOrgPerson(uid string, mails ...string) string {
	var b strings.Builder
	b.WriteString(attr("dn", InetOrgPersonDN(uid)))
	b.WriteString("objectClass: inetOrgPerson\n")
	b.WriteString(attr("uid", uid) + attr("cn", uid) + attr("sn", uid))
	for _, m := range mails {
		b.WriteString(attr("mail", m))
	}
	return b.String() + "\n"
}

// InetOrgPersonDN is the DN InetOrgPerson gives uid.
func InetOrgPersonDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + PeopleBase }

// GroupOfNames is the LDIF of an OpenLDAP group below GroupsBase (a
// groupOfNames needs at least one member; extensibleObject allows mail).
func GroupOfNames(cn, mail string, members ...string) string {
	var b strings.Builder
	b.WriteString(attr("dn", ADGroupDN(cn)))
	b.WriteString("objectClass: groupOfNames\nobjectClass: extensibleObject\n")
	b.WriteString(attr("cn", cn))
	if mail != "" {
		b.WriteString(attr("mail", mail))
	}
	for _, m := range members {
		b.WriteString(attr("member", m))
	}
	return b.String() + "\n"
}

// attr is one LDIF line "name: value", base64 ("name:: ...") when the
// value is not a SAFE-STRING of RFC 2849 (non-ASCII, leading space, colon
// or "<", trailing space, control characters).
func attr(name, value string) string {
	safe := value == "" || !(value[0] == ' ' || value[0] == ':' || value[0] == '<' || value[len(value)-1] == ' ')
	for i := 0; safe && i < len(value); i++ {
		if c := value[i]; c < 0x20 || c >= 0x7f {
			safe = false
		}
	}
	if safe {
		return name + ": " + value + "\n"
	}
	return name + ":: " + base64.StdEncoding.EncodeToString([]byte(value)) + "\n"
}
