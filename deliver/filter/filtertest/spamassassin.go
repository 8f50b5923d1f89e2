package filtertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
)

// SpamAssassin, run privately on loopback: spamd with Debian's packaged
// rules (/usr/share/spamassassin; no sa-update), local tests only (-L: no
// DNS, no network), a site configuration directory of its own (the
// packaged .pre files, which load the plugins, and spamdLocalCf), no
// user configuration (-x); asked by spamc as a command filter and by
// spamass-milter as a milter.

// spamdLocalCf is the private spamd's local.cf: headers only, no Bayes
// database; then what the tests look at. X-Spam-Relays-Untrusted shows
// the relays SpamAssassin parsed from the Received fields, the first
// being the client it judges (spamass-milter passes on only the usual
// X-Spam fields: there the POPFETCH_CLIENT rule says whether that client
// was the one of the sample's trusted Received field, as told by
// popfetch, whose MTA name is popfetch.test; a score of 0 would
// disable the rule).
const spamdLocalCf = `report_safe 0
use_bayes 0

add_header all Relays-Untrusted _RELAYSUNTRUSTED_
header POPFETCH_CLIENT X-Spam-Relays-Untrusted =~ /^\[ ip=203\.0\.113\.25 rdns=mail\.example\.net helo=mail\.example\.net by=popfetch\.test /
score POPFETCH_CLIENT 0.001
`

// spamdRules is where Debian's spamassassin package ships its rules.
const spamdRules = "/usr/share/spamassassin"

var (
	spamdOnce sync.Once
	spamdD    *Daemon
	samMu     sync.Mutex
	samDs     = map[string]*Daemon{} // by spamd address and flags
)

// Spamd returns the shared private spamd (its Addr is HOST:PORT for
// spamc's -d and -p) or skips (fails in CI) when SpamAssassin is not
// installed.
func Spamd(t testing.TB) *Daemon {
	t.Helper()
	spamd, err1 := exec.LookPath("spamd")
	spamc, err2 := exec.LookPath("spamc")
	_, err3 := os.Stat(filepath.Join(spamdRules, "20_body_tests.cf"))
	if err1 != nil || err2 != nil || err3 != nil {
		testutil.Unavailable(t, "spamd, spamc or the rules in "+spamdRules+" not installed (Debian packages spamd, spamc, spamassassin)")
	}
	spamdOnce.Do(func() {
		d, _ := newDaemon("pf-spamd-")
		spamdD = d
		if d.err != nil {
			return
		}
		// Readable by all: run as root, spamd scans as nobody (the
		// user of a spamc run by root), and reads its configuration
		// then.
		os.Chmod(d.dir, 0o755)
		site := filepath.Join(d.dir, "site")
		for _, sub := range []string{"site", "home"} {
			os.MkdirAll(filepath.Join(d.dir, sub), 0o755)
		}
		// The .pre files load the plugins (Check among them, without
		// which spamd cannot scan); spamd reads them from the site
		// directory only.
		pres, _ := filepath.Glob("/etc/spamassassin/*.pre")
		if len(pres) == 0 {
			d.err = fmt.Errorf("no /etc/spamassassin/*.pre (Debian package spamassassin)")
			return
		}
		files := map[string]string{"site/local.cf": spamdLocalCf}
		for _, p := range pres {
			b, err := os.ReadFile(p)
			if err != nil {
				d.err = err
				return
			}
			files[filepath.Join("site", filepath.Base(p))] = string(b)
		}
		if d.err = d.writeFiles(files, 0o644); d.err != nil {
			return
		}
		d.Log = filepath.Join(d.dir, "spamd.log")
		start := time.Now()
		d.err = d.start("spamd.out", spamd, "--local", "--nouser-config", "--configpath="+spamdRules,
			"--siteconfigpath="+site, "--helper-home-dir="+filepath.Join(d.dir, "home"),
			"--listen="+d.Addr, "--max-children=5", "--pidfile="+filepath.Join(d.dir, "spamd.pid"),
			"--syslog="+d.Log)
		if d.err != nil {
			return
		}
		// spamd listens before it has read its rules: ready is when it
		// answers spamc's PING.
		host, p, _ := net.SplitHostPort(d.Addr)
		d.err = d.waitFor("spamd", testutil.Slow(90*time.Second), func() bool {
			return exec.Command(spamc, "-K", "-d", host, "-p", p).Run() == nil
		})
		d.startup = time.Since(start)
	})
	return spamdD.started(t, "spamd")
}

// SpamassMilter returns a private spamass-milter with the flags, on a
// loopback port, whose spamc asks the spamd at spamdAddr with the spamc
// flags after "--" (spamass-milter runs /usr/bin/spamc); one per spamd
// address and flags.
func SpamassMilter(t testing.TB, spamdAddr string, flags ...string) *Daemon {
	t.Helper()
	bin, err := exec.LookPath("spamass-milter")
	if err != nil {
		testutil.Unavailable(t, "spamass-milter not installed (Debian package spamass-milter)")
	}
	key := spamdAddr + " " + strings.Join(flags, " ")
	samMu.Lock()
	defer samMu.Unlock()
	d := samDs[key]
	if d == nil {
		var port int
		d, port = newDaemon("pf-sam-")
		samDs[key] = d
		d.Log = filepath.Join(d.dir, "milter.out")
		if d.err == nil {
			host, sport, _ := net.SplitHostPort(spamdAddr)
			argv := []string{bin, "-p", fmt.Sprintf("inet:%d@127.0.0.1", port)}
			for _, f := range flags {
				if f == "--" {
					argv = append(argv, "--", "-d", host, "-p", sport)
					continue
				}
				argv = append(argv, f)
			}
			start := time.Now()
			if d.err = d.start("milter.out", argv...); d.err == nil {
				d.err = d.waitFor("spamass-milter", testutil.Slow(30*time.Second), listening(d.Addr))
			}
			d.startup = time.Since(start)
		}
	}
	return d.started(t, "spamass-milter "+key)
}
