// Package filtertest runs real filters privately on loopback for the
// tests of other packages: rspamd (its proxy worker in milter mode,
// scanning itself, no redis, DNS answered NXDOMAIN at once) and clamd
// with clamav-milter (a signature database written here: the EICAR test
// file's MD5; no download), and SpamAssassin's spamd and spamass-milter
// (spamassassin.go). Each is started once per test binary, on first use;
// the binary's TestMain calls Stop. A filter that is not installed skips
// the test locally and fails it in CI (testutil.Unavailable).
package filtertest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
)

// GTUBEAddHeader is rspamd's test pattern for the "add header" action
// (the "Y" variant of SpamAssassin's GTUBE; the "X" one rejects), with
// enable_test_patterns on.
const GTUBEAddHeader = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// Daemon is a private instance of a real filter.
type Daemon struct {
	Addr    string // milter address, host:port
	dir     string
	Log     string // its log file
	startup time.Duration
	err     error
	cmds    []*exec.Cmd
}

var (
	daemonsMu sync.Mutex
	daemons   []*Daemon
)

// Stop stops every daemon started (call it from TestMain after m.Run).
func Stop() {
	daemonsMu.Lock()
	defer daemonsMu.Unlock()
	for _, d := range daemons {
		for i := len(d.cmds) - 1; i >= 0; i-- {
			c := d.cmds[i]
			syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
		os.RemoveAll(d.dir)
	}
	daemons = nil
}

// FreePort returns a loopback port nothing listens on (just now).
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newDaemon makes a daemon's directory (removed by Stop) and picks its
// loopback port; d.err says what failed.
func newDaemon(prefix string) (d *Daemon, port int) {
	d = &Daemon{}
	d.dir, d.err = os.MkdirTemp("", prefix)
	if d.err != nil {
		return d, 0
	}
	daemonsMu.Lock()
	daemons = append(daemons, d)
	daemonsMu.Unlock()
	port, d.err = FreePort()
	d.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	return d, port
}

// writeFiles writes each file (by path under d's directory) with perm.
func (d *Daemon) writeFiles(files map[string]string, perm os.FileMode) error {
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d.dir, name), []byte(content), perm); err != nil {
			return err
		}
	}
	return nil
}

// started fails t if d did not start, and logs how long it took.
func (d *Daemon) started(t testing.TB, what string) *Daemon {
	t.Helper()
	if d.err != nil {
		t.Fatalf("private %s: %v", what, d.err)
	}
	t.Logf("private %s on %s, ready after %v", what, d.Addr, d.startup.Round(time.Millisecond))
	return d
}

// start runs argv in its own process group (killed with it), output to
// out.
func (d *Daemon) start(out string, argv ...string) error {
	f, err := os.Create(filepath.Join(d.dir, out))
	if err != nil {
		return err
	}
	defer f.Close()
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdout, c.Stderr = f, f
	c.Dir = d.dir
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		return err
	}
	d.cmds = append(d.cmds, c)
	return nil
}

// waitFor polls ready until it is true or the limit passes.
func (d *Daemon) waitFor(what string, limit time.Duration, ready func() bool) error {
	end := time.Now().Add(limit)
	for !ready() {
		if time.Now().After(end) {
			out, _ := os.ReadFile(d.Log)
			return fmt.Errorf("%s not ready after %v; log:\n%s", what, limit, Tail(out, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Tail is the last n bytes of b (of a log, for a failure message).
func Tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func listening(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

var (
	rspamdOnce sync.Once
	rspamdD    *Daemon
	clamOnce   sync.Once
	clamD      *Daemon
)

// rspamdConf is the private rspamd's configuration: the packaged rules
// (common.conf), DNS pointed at nxdomainServer (no network here: every
// name and blocklist entry does not exist, at once, instead of a timeout
// per lookup), test patterns (GTUBE) on, and only the proxy worker, in
// milter mode, scanning itself.
const rspamdConf = `.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    # Before the packaged options: rspamd keeps the first of two
    # settings, and the resolver otherwise is resolv.conf's.
    enable_test_patterns = true;
    dns {
        nameserver = ["%s"];
        timeout = 1s;
        retransmits = 1;
    }
    .include "$CONFDIR/options.inc"
}
logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}
worker "rspamd_proxy" {
    bind_socket = "%s";
    milter = yes;
    timeout = 120s;
    count = 1;
    upstream "local" {
        default = yes;
        self_scan = yes;
    }
}
`

// rspamdLua adds a zero-score symbol that records what rspamd knows of
// the client, so that its own result shows the IP, HELO and host name it
// was given.
const rspamdLua = `rspamd_config:register_symbol{
  name = 'POPFETCH_CLIENT',
  score = 0.0,
  callback = function(task)
    local ip = task:get_from_ip()
    task:insert_result('POPFETCH_CLIENT', 0.0, 'ip=' .. (ip and ip:is_valid() and ip:to_string() or ''),
      'helo=' .. (task:get_helo() or ''), 'host=' .. (task:get_hostname() or ''))
  end
}
`

const rspamdHeaders = `use = ["x-spamd-result", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
`

// Rspamd returns the shared private rspamd, or skips (fails in CI)
// when it is not installed.
func Rspamd(t testing.TB) *Daemon {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		testutil.Unavailable(t, "rspamd not installed (Debian package rspamd)")
	}
	rspamdOnce.Do(func() {
		d, _ := newDaemon("popfetch-rspamd-")
		rspamdD = d
		if d.err != nil {
			return
		}
		dns, err := nxdomainServer()
		if err != nil {
			d.err = err
			return
		}
		local := filepath.Join(d.dir, "local")
		for _, sub := range []string{"local/local.d", "db", "run", "log"} {
			os.MkdirAll(filepath.Join(d.dir, sub), 0o700)
		}
		files := map[string]string{
			"rspamd.conf":                       fmt.Sprintf(rspamdConf, dns, d.Addr),
			"local/rspamd.local.lua":            rspamdLua,
			"local/local.d/milter_headers.conf": rspamdHeaders,
		}
		if d.err = d.writeFiles(files, 0o600); d.err != nil {
			return
		}
		d.Log = filepath.Join(d.dir, "log", "rspamd.log")
		start := time.Now()
		// -i: the tests run as root, and a private instance need not
		// drop privileges.
		d.err = d.start("rspamd.out", bin, "-f", "-i", "-c", filepath.Join(d.dir, "rspamd.conf"),
			"--var", "LOCAL_CONFDIR="+local, "--var", "DBDIR="+filepath.Join(d.dir, "db"),
			"--var", "RUNDIR="+filepath.Join(d.dir, "run"), "--var", "LOGDIR="+filepath.Join(d.dir, "log"))
		if d.err == nil {
			d.err = d.waitFor("rspamd", testutil.Slow(90*time.Second), listening(d.Addr))
		}
		d.startup = time.Since(start)
	})
	return rspamdD.started(t, "rspamd")
}

// nxdomainServer answers every DNS query on a loopback UDP port with
// NXDOMAIN (RFC 1035 §4.1.1: the query echoed with QR set and RCODE 3),
// for the rest of the test binary; it returns its address.
func nxdomainServer() (string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			q := buf[:n]
			q[2] |= 0x80                                            // QR: a response
			q[3] = q[3]&0x70 | 0x80 | 3                             // RA, RCODE NXDOMAIN
			q[6], q[7], q[8], q[9], q[10], q[11] = 0, 0, 0, 0, 0, 0 // no answer, authority, additional
			// The additional section (an EDNS OPT) is dropped with its count:
			// cut the message after the question.
			end := 12
			for end < n && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5 // the root label, QTYPE, QCLASS
			if end > n {
				continue
			}
			pc.WriteTo(q[:end], from)
		}
	}()
	return pc.LocalAddr().String(), nil
}

// EICAR is the EICAR anti-virus test file (68 bytes), in two parts so that
// this source file is not itself the test file.
var EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// Clam returns the shared private clamd and clamav-milter.
func Clam(t testing.TB) *Daemon {
	t.Helper()
	clamd, err1 := exec.LookPath("clamd")
	milterBin, err2 := exec.LookPath("clamav-milter")
	if err1 != nil || err2 != nil {
		testutil.Unavailable(t, "clamd or clamav-milter not installed (Debian packages clamav-daemon, clamav-milter)")
	}
	clamOnce.Do(func() {
		// Short: a unix socket path has to fit in 108 bytes.
		d, port := newDaemon("pf-clam-")
		clamD = d
		if d.err != nil {
			return
		}
		for _, sub := range []string{"db", "tmp"} {
			os.MkdirAll(filepath.Join(d.dir, sub), 0o700)
		}
		sum := md5.Sum([]byte(EICAR))
		sock := filepath.Join(d.dir, "clamd.sock")
		files := map[string]string{
			// A hash signature (MD5:size:name), the whole database.
			"db/popfetch.hdb": fmt.Sprintf("%s:%d:Popfetch.Test.EICAR\n", hex.EncodeToString(sum[:]), len(EICAR)),
			"clamd.conf": fmt.Sprintf("LocalSocket %s\nDatabaseDirectory %s\nForeground yes\nLogFile %s\nTemporaryDirectory %s\n",
				sock, filepath.Join(d.dir, "db"), filepath.Join(d.dir, "clamd.log"), filepath.Join(d.dir, "tmp")),
			"milter.conf": fmt.Sprintf("MilterSocket inet:%d@127.0.0.1\nClamdSocket unix:%s\nForeground yes\nOnInfected Reject\n"+
				"OnFail Defer\nAddHeader Replace\nRejectMsg \"Virus found: %%v\"\nLogFile %s\nLogInfected Full\nLogClean Full\nTemporaryDirectory %s\n",
				port, sock, filepath.Join(d.dir, "milter.log"), filepath.Join(d.dir, "tmp")),
		}
		if d.err = d.writeFiles(files, 0o600); d.err != nil {
			return
		}
		start := time.Now()
		d.Log = filepath.Join(d.dir, "clamd.log")
		if d.err = d.start("clamd.out", clamd, "-c", filepath.Join(d.dir, "clamd.conf")); d.err != nil {
			return
		}
		if d.err = d.waitFor("clamd", testutil.Slow(60*time.Second), func() bool {
			c, err := net.Dial("unix", sock)
			if err == nil {
				c.Close()
			}
			return err == nil
		}); d.err != nil {
			return
		}
		d.Log = filepath.Join(d.dir, "milter.log")
		if d.err = d.start("milter.out", milterBin, "-c", filepath.Join(d.dir, "milter.conf")); d.err != nil {
			return
		}
		d.err = d.waitFor("clamav-milter", testutil.Slow(30*time.Second), listening(d.Addr))
		d.startup = time.Since(start)
	})
	return clamD.started(t, "clamd + clamav-milter")
}
