package filter

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
)

// The real filters, run privately on loopback: rspamd (its proxy worker
// in milter mode, scanning itself, no redis) and clamd with
// clamav-milter (a signature database the test writes: the EICAR test
// file's MD5). Each is started once per test binary, on first use, and
// stopped by TestMain.

func TestMain(m *testing.M) {
	code := m.Run()
	stopDaemons()
	os.Exit(code)
}

// daemon is a private instance of a real filter.
type daemon struct {
	addr    string // milter address
	dir     string
	log     string // its log file
	startup time.Duration
	err     error
	cmds    []*exec.Cmd
}

var (
	daemonsMu sync.Mutex
	daemons   []*daemon
)

func stopDaemons() {
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

// freePort returns a loopback port nothing listens on (just now).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs argv in its own process group (killed with it), output to
// out.
func (d *daemon) start(out string, argv ...string) error {
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
func (d *daemon) waitFor(what string, limit time.Duration, ready func() bool) error {
	end := time.Now().Add(limit)
	for !ready() {
		if time.Now().After(end) {
			out, _ := os.ReadFile(d.log)
			return fmt.Errorf("%s not ready after %v; log:\n%s", what, limit, tail(out, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func tail(b []byte, n int) []byte {
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
	rspamdD    *daemon
	clamOnce   sync.Once
	clamD      *daemon
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

// startRspamd returns the shared private rspamd, or skips (fails in CI)
// when it is not installed.
func startRspamd(t testing.TB) *daemon {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		testutil.Unavailable(t, "rspamd not installed (Debian package rspamd)")
	}
	rspamdOnce.Do(func() {
		d := &daemon{}
		rspamdD = d
		d.dir, d.err = os.MkdirTemp("", "popfetch-rspamd-")
		if d.err != nil {
			return
		}
		daemonsMu.Lock()
		daemons = append(daemons, d)
		daemonsMu.Unlock()
		port, err := freePort()
		if err != nil {
			d.err = err
			return
		}
		d.addr = fmt.Sprintf("127.0.0.1:%d", port)
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
			"rspamd.conf":                       fmt.Sprintf(rspamdConf, dns, d.addr),
			"local/rspamd.local.lua":            rspamdLua,
			"local/local.d/milter_headers.conf": rspamdHeaders,
		}
		for name, content := range files {
			if d.err = os.WriteFile(filepath.Join(d.dir, name), []byte(content), 0o600); d.err != nil {
				return
			}
		}
		d.log = filepath.Join(d.dir, "log", "rspamd.log")
		start := time.Now()
		// -i: the tests run as root, and a private instance need not
		// drop privileges.
		d.err = d.start("rspamd.out", bin, "-f", "-i", "-c", filepath.Join(d.dir, "rspamd.conf"),
			"--var", "LOCAL_CONFDIR="+local, "--var", "DBDIR="+filepath.Join(d.dir, "db"),
			"--var", "RUNDIR="+filepath.Join(d.dir, "run"), "--var", "LOGDIR="+filepath.Join(d.dir, "log"))
		if d.err == nil {
			d.err = d.waitFor("rspamd", testutil.Slow(90*time.Second), listening(d.addr))
		}
		d.startup = time.Since(start)
	})
	if rspamdD.err != nil {
		t.Fatalf("private rspamd: %v", rspamdD.err)
	}
	t.Logf("private rspamd on %s, started in %v", rspamdD.addr, rspamdD.startup.Round(time.Millisecond))
	return rspamdD
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

// eicar is the EICAR anti-virus test file (68 bytes), in two parts so that
// this source file is not itself the test file.
var eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// startClam returns the shared private clamd and clamav-milter.
func startClam(t testing.TB) *daemon {
	t.Helper()
	clamd, err1 := exec.LookPath("clamd")
	milterBin, err2 := exec.LookPath("clamav-milter")
	if err1 != nil || err2 != nil {
		testutil.Unavailable(t, "clamd or clamav-milter not installed (Debian packages clamav-daemon, clamav-milter)")
	}
	clamOnce.Do(func() {
		d := &daemon{}
		clamD = d
		// Short: a unix socket path has to fit in 108 bytes.
		d.dir, d.err = os.MkdirTemp("", "pf-clam-")
		if d.err != nil {
			return
		}
		daemonsMu.Lock()
		daemons = append(daemons, d)
		daemonsMu.Unlock()
		port, err := freePort()
		if err != nil {
			d.err = err
			return
		}
		d.addr = fmt.Sprintf("127.0.0.1:%d", port)
		for _, sub := range []string{"db", "tmp"} {
			os.MkdirAll(filepath.Join(d.dir, sub), 0o700)
		}
		sum := md5.Sum([]byte(eicar))
		sock := filepath.Join(d.dir, "clamd.sock")
		files := map[string]string{
			// A hash signature (MD5:size:name), the whole database.
			"db/popfetch.hdb": fmt.Sprintf("%s:%d:Popfetch.Test.EICAR\n", hex.EncodeToString(sum[:]), len(eicar)),
			"clamd.conf": fmt.Sprintf("LocalSocket %s\nDatabaseDirectory %s\nForeground yes\nLogFile %s\nTemporaryDirectory %s\n",
				sock, filepath.Join(d.dir, "db"), filepath.Join(d.dir, "clamd.log"), filepath.Join(d.dir, "tmp")),
			"milter.conf": fmt.Sprintf("MilterSocket inet:%d@127.0.0.1\nClamdSocket unix:%s\nForeground yes\nOnInfected Reject\n"+
				"OnFail Defer\nAddHeader Replace\nRejectMsg \"Virus found: %%v\"\nLogFile %s\nLogInfected Full\nLogClean Full\nTemporaryDirectory %s\n",
				port, sock, filepath.Join(d.dir, "milter.log"), filepath.Join(d.dir, "tmp")),
		}
		for name, content := range files {
			if d.err = os.WriteFile(filepath.Join(d.dir, name), []byte(content), 0o600); d.err != nil {
				return
			}
		}
		start := time.Now()
		d.log = filepath.Join(d.dir, "clamd.log")
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
		d.log = filepath.Join(d.dir, "milter.log")
		if d.err = d.start("milter.out", milterBin, "-c", filepath.Join(d.dir, "milter.conf")); d.err != nil {
			return
		}
		d.err = d.waitFor("clamav-milter", testutil.Slow(30*time.Second), listening(d.addr))
		d.startup = time.Since(start)
	})
	if clamD.err != nil {
		t.Fatalf("private clamd/clamav-milter: %v", clamD.err)
	}
	t.Logf("private clamd + clamav-milter on %s, started in %v", clamD.addr, clamD.startup.Round(time.Millisecond))
	return clamD
}

// gtube is SpamAssassin's test pattern, which rspamd rejects.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// withBody is sampleMessage with another body.
func withBody(body string) string {
	i := strings.Index(sampleMessage, "\r\n\r\n")
	return sampleMessage[:i+4] + body
}

// eicarMessage carries the EICAR file as a MIME attachment.
func eicarMessage() string {
	h := sampleMessage[:strings.Index(sampleMessage, "\r\n\r\n")]
	return h + "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(eicar)) + "\r\n--b1--\r\n"
}

func headerValue(v Verdict, name string) (string, bool) {
	for _, c := range v.Changes {
		if strings.EqualFold(c.Name, name) && c.Kind != RemoveHeader {
			return strings.Join(strings.Fields(c.Value), " "), true
		}
	}
	return "", false
}

func TestRspamd(t *testing.T) {
	d := startRspamd(t)
	f, err := NewMilter("rspamd", "inet:"+d.addr, MilterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []Step{{Filter: f, Timeout: testutil.Slow(60 * time.Second)}}

	t.Run("clean", func(t *testing.T) {
		env, m := sampleEnv(t, sampleMessage)
		res, err := Run(context.Background(), steps, env, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		v := res.Verdicts[0]
		if res.Action != Accept {
			t.Fatalf("clean message: %v %q", res.Action, v.Reply)
		}
		result, ok := headerValue(v, "X-Spamd-Result")
		if !ok {
			t.Fatalf("no X-Spamd-Result among the changes %v", v.Changes)
		}
		t.Logf("X-Spamd-Result: %s", result)
		// What rspamd itself says it was told: the client of the trusted
		// Received field, not popfetch's own connection.
		want := "POPFETCH_CLIENT(0.00)[ip=203.0.113.25,helo=mail.example.net,host=mail.example.net]"
		if !strings.Contains(result, want) {
			t.Errorf("rspamd's result lacks %s", want)
		}
		if _, ok := headerValue(v, "X-Spam-Status"); !ok {
			t.Errorf("no X-Spam-Status among the changes %v", v.Changes)
		}
		if res.Message == nil {
			t.Fatal("no filtered copy")
		}
		var out bytes.Buffer
		out.ReadFrom(res.Message.Reader())
		if !strings.Contains(out.String(), "\r\nX-Spamd-Result: ") || !strings.HasSuffix(out.String(), "Alice\r\n") {
			t.Errorf("filtered copy:\n%s", out.String())
		}
		log, _ := os.ReadFile(d.log)
		if !bytes.Contains(log, []byte("ip: 203.0.113.25")) {
			t.Errorf("rspamd's log does not show the client IP 203.0.113.25:\n%s", tail(log, 1500))
		}
	})
	t.Run("gtube", func(t *testing.T) {
		env, m := sampleEnv(t, withBody("Spam test\r\n"+gtube+"\r\n"))
		res, err := Run(context.Background(), steps, env, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		v := res.Verdicts[0]
		if res.Action != Reject || !strings.Contains(strings.ToLower(v.Reply), "gtube") {
			t.Errorf("GTUBE: %v %q, want reject with rspamd's reply", res.Action, v.Reply)
		}
		t.Logf("GTUBE verdict: %v %q", res.Action, v.Reply)
	})
}

func TestClamav(t *testing.T) {
	d := startClam(t)
	f, err := NewMilter("clamav", "inet:"+d.addr, MilterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []Step{{Filter: f, Timeout: testutil.Slow(30 * time.Second)}}
	t.Run("clean", func(t *testing.T) {
		env, m := sampleEnv(t, sampleMessage)
		res, err := Run(context.Background(), steps, env, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		v := res.Verdicts[0]
		status, _ := headerValue(v, "X-Virus-Status")
		if res.Action != Accept || status != "Clean" {
			t.Errorf("clean message: %v %q, X-Virus-Status %q; changes %v", res.Action, v.Reply, status, v.Changes)
		}
	})
	t.Run("eicar", func(t *testing.T) {
		env, m := sampleEnv(t, eicarMessage())
		res, err := Run(context.Background(), steps, env, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		v := res.Verdicts[0]
		if res.Action != Reject || !strings.Contains(v.Reply, "Popfetch.Test.EICAR") {
			t.Errorf("EICAR: %v %q, want reject naming the signature", res.Action, v.Reply)
		}
		t.Logf("EICAR verdict: %v %q", res.Action, v.Reply)
	})
}
