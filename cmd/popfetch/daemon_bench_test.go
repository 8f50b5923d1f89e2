package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/daemon"
	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// BenchmarkDaemon500 runs the real `popfetch run` against 500 accounts on
// one local dovecot (500 passwd-file users) and reports the wall time of
// one full cycle (`now` for every account) with no new mail and with 5 new
// messages per account, the daemon's peak RSS, and its CPU time per idle
// cycle. The targets (idle cycle < 5 s, peak RSS < 60 MB)
// are reported, not asserted: the figures depend on the machine and its
// load. What is asserted is correctness: every poll succeeds, every message
// is delivered exactly once, the daemon exits 0 on SIGTERM.
//
//	go test -run '^$' -bench BenchmarkDaemon500 -benchtime 1x ./cmd/popfetch/
//
// ns/op is the median of max(b.N, 3) idle cycles; the first of them also
// makes the UIDL stores forget the messages the first cycle deleted (one
// fsynced append per account), so it is slower than the rest. Each run of
// a sub-benchmark starts its own daemon; with -benchtime Nx, N > 1, the
// framework runs b.N = 1 first, so use 1x unless more idle cycles matter.
// Sub-benchmarks, first by how the server runs: "fork-per-login" is
// dovecot's default (a fresh pop3-login and pop3 process for every
// connection, so its process start-up dominates an idle cycle on a small
// machine), "reuse" its high-performance mode as busy providers run it
// (dovecottest.Options.ReuseProcesses). Then by the rc file's session
// limits: left at their defaults (max_parallel 8, per_server 2), and
// per_server = 8, since all 500 accounts are on one server. Dovecot's CPU
// is that of the instance's process group, reaped children included.
//
// POPFETCH_BENCH_PPROF=DIR also profiles the daemon (see benchProfile).
func BenchmarkDaemon500(b *testing.B) {
	if testing.Short() {
		b.Skip("slow: 500 accounts against a real dovecot")
	}
	for _, server := range []struct {
		name string
		opts dovecottest.Options
	}{
		{"fork-per-login", dovecottest.Options{}},
		{"reuse", dovecottest.Options{ReuseProcesses: true}},
	} {
		b.Run(server.name, func(b *testing.B) {
			bc := benchCase{accounts: 500, initial: 2, busy: 5, idleTarget: 5 * time.Second, rssTargetMB: 60}
			srv, mbs := benchServer(b, server.opts, bc.accounts)
			master := dovecotMaster(b)
			for _, c := range []struct {
				name   string
				limits string // top-level rc settings
			}{
				{"defaults", ""},
				{"per_server=8", "per_server = 8\n"},
			} {
				b.Run(c.name, func(b *testing.B) {
					benchDaemon(b, srv, mbs, master, c.limits, bc)
				})
			}
		})
	}
}

// BenchmarkDaemon5000 is BenchmarkDaemon500 with 5,000 accounts on one
// dovecot in high-performance mode (dovecottest.Options.ReuseProcesses),
// per_server = 8: the many-accounts figures. Besides the idle cycle's
// wall time it reports the daemon's CPU per account per idle cycle and
// its memory: total RSS (VmRSS after the idle cycles, and the peak,
// VmHWM) and that total per account. Target: total RSS under 100 MB.
// One message per account before the first cycle (so every account has
// delivered once, and its UIDL store is open), one more for the busy
// cycle. Each cycle is some 5,000 logins (SCRAM-SHA-256 on both sides),
// so a run takes about ten minutes on a busy two-core machine, and it
// runs only when asked:
//
//	POPFETCH_BENCH_5000=1 go test -run '^$' -bench BenchmarkDaemon5000 -benchtime 1x -timeout 30m ./cmd/popfetch/
func BenchmarkDaemon5000(b *testing.B) {
	if os.Getenv("POPFETCH_BENCH_5000") != "1" {
		b.Skip("5,000 accounts against a real dovecot; set POPFETCH_BENCH_5000=1")
	}
	bc := benchCase{accounts: 5000, initial: 1, busy: 1, rssTargetMB: 100}
	srv, mbs := benchServer(b, dovecottest.Options{ReuseProcesses: true}, bc.accounts)
	benchDaemon(b, srv, mbs, dovecotMaster(b), "per_server = 8\n", bc)
}

// benchCase is the size of a daemon benchmark.
type benchCase struct {
	accounts int
	initial  int // messages per mailbox before the daemon starts
	busy     int // messages per mailbox for the busy cycle
	// Targets, reported when missed; zero: none.
	idleTarget  time.Duration
	rssTargetMB float64
}

// benchServer starts dovecot with n users, u0000 and up.
func benchServer(b *testing.B, opts dovecottest.Options, n int) (*dovecottest.Server, []*dovecottest.Mailbox) {
	srv := dovecottest.Start(b, opts)
	mbs := make([]*dovecottest.Mailbox, n)
	for i := range mbs {
		mbs[i] = srv.AddUser(b, fmt.Sprintf("u%04d", i), "pw")
	}
	return srv, mbs
}

const clockTicks = 100

func benchDaemon(b *testing.B, srv *dovecottest.Server, mbs []*dovecottest.Mailbox, master int, limits string, bc benchCase) {
	b.StopTimer()
	dir := b.TempDir()
	pwFile := filepath.Join(dir, "pw")
	writeFile(b, pwFile, "pw\n")
	// What all accounts share is in the defaults block, and the Maildir
	// paths are relative to the rc file: 5,000 accounts written out in
	// full would pass the rc file's size limit (1 MiB).
	var rc strings.Builder
	fmt.Fprintf(&rc, "state_dir = %q\n%s\n", filepath.Join(dir, "state"), limits)
	fmt.Fprintf(&rc, "defaults {\n  server = \"127.0.0.1\"\n  port = %d\n  tls = \"none\"\n  password_file = %q\n  keep = false\n  interval = \"24h\"\n}\n",
		srv.PlainPort, pwFile)
	for _, mb := range mbs {
		fmt.Fprintf(&rc, "account %q {\n  username = %q\n  deliver { maildir = \"mail/%s\" }\n}\n", mb.User, mb.User, mb.User)
	}
	rcPath := filepath.Join(dir, "popfetch.hcl")
	writeFile(b, rcPath, rc.String())
	for i, mb := range mbs {
		mb.Put(b, benchMsgs(mb.User, i, 0, bc.initial)...)
	}

	// The daemon. Its log goes to a file: one line per poll, read on failure.
	logPath := filepath.Join(dir, "daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	bin, prof := popfetchBin, benchProfiler(b)
	if prof != nil {
		bin = prof.bin
	}
	cmd := exec.Command(bin, "-f", rcPath, "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	if prof != nil {
		cmd.Env = append(os.Environ(), "POPFETCH_PPROF_LISTEN="+prof.addr)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	fail := func(format string, args ...any) {
		b.Helper()
		log, _ := os.ReadFile(logPath)
		b.Fatalf("%s\ndaemon log, last part:\n%s", fmt.Sprintf(format, args...), benchTail(string(log), 4000))
	}
	pid := cmd.Process.Pid
	sock := daemon.ControlPath(filepath.Join(dir, "state"))

	// The first cycle (2 messages per account): each account's first
	// scheduled poll is jittered over min(24h/10, 30s), so instead of
	// waiting that out, ask for all of them as soon as the control socket
	// answers. A poll the jitter already started is followed by the
	// requested one, so when `now` returns every account has been polled
	// and none is due for 24 hours.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for {
		select {
		case err := <-exited:
			stopped = true
			fail("daemon exited at start-up: %v", err)
		default:
		}
		_, err := daemon.ControlStatus(ctx, sock)
		if err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			fail("control socket not answering after a minute: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	up := time.Since(start)
	t0 := time.Now()
	if _, err := daemon.ControlNow(ctx, sock, nil); err != nil {
		fail("first cycle: %v", err)
	}
	first := time.Since(t0)
	st, err := daemon.ControlStatus(ctx, sock)
	if err != nil {
		fail("status: %v", err)
	}
	if len(st.Accounts) != bc.accounts {
		fail("status lists %d accounts; want %d", len(st.Accounts), bc.accounts)
	}
	for _, a := range st.Accounts {
		if a.Last == nil || a.Last.Err != "" || a.State != daemon.StateIdle || a.Totals.Failures != 0 || a.Totals.Delivered != bc.initial {
			fail("after the first cycle, %s: state %s, last %+v, totals %+v; want idle, %d delivered, no failures",
				a.Name, a.State, a.Last, a.Totals, bc.initial)
		}
	}
	rssFirst := procStatusKB(b, pid, "VmHWM")

	// Idle cycles: nothing new on the server.
	cycles := max(b.N, 3)
	cpu0, dcpu0 := procCPU(b, pid), dovecotCPU(b, master)
	var idle []time.Duration
	var idlePolls []time.Duration
	b.StartTimer()
	for range cycles {
		t0 := time.Now()
		res, err := daemon.ControlNow(ctx, sock, nil)
		el := time.Since(t0)
		if err != nil {
			fail("idle cycle: %v", err)
		}
		checkResults(b, fail, res, bc.accounts, 0)
		idle = append(idle, el)
		for _, r := range res {
			idlePolls = append(idlePolls, r.Elapsed)
		}
	}
	b.StopTimer()
	cpu1, dcpu1 := procCPU(b, pid), dovecotCPU(b, master)
	// The daemon's memory in its steady state: every account polled
	// several times, nothing in flight.
	rssIdle, hwmIdle := procStatusKB(b, pid, "VmRSS"), procStatusKB(b, pid, "VmHWM")
	if prof != nil {
		prof.profile(b, func() {
			res, err := daemon.ControlNow(ctx, sock, nil)
			if err != nil {
				fail("idle cycle while profiling: %v", err)
			}
			checkResults(b, fail, res, bc.accounts, 0)
		})
	}

	// The busy cycle: new messages in every mailbox.
	for i, mb := range mbs {
		mb.Put(b, benchMsgs(mb.User, i, bc.initial, bc.busy)...)
	}
	t0 = time.Now()
	res, err := daemon.ControlNow(ctx, sock, nil)
	busy := time.Since(t0)
	if err != nil {
		fail("busy cycle: %v", err)
	}
	checkResults(b, fail, res, bc.accounts, bc.busy)
	var busyPolls []time.Duration
	for _, r := range res {
		busyPolls = append(busyPolls, r.Elapsed)
	}
	delivered := 0
	for _, mb := range mbs {
		n := maildirCount(b, filepath.Join(dir, "mail", mb.User))
		if n != bc.initial+bc.busy {
			fail("%s: %d messages in the Maildir; want %d", mb.User, n, bc.initial+bc.busy)
		}
		delivered += n - bc.initial
		if c := mb.Count(b); c != 0 {
			fail("%s: %d messages left on the server; want 0 (keep = false)", mb.User, c)
		}
	}
	if delivered != bc.accounts*bc.busy {
		fail("busy cycle delivered %d messages; want %d", delivered, bc.accounts*bc.busy)
	}

	rss := procStatusKB(b, pid, "VmHWM")
	threads := procStatusKB(b, pid, "Threads")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			fail("daemon exit after SIGTERM: %v; want status 0", err)
		}
	case <-time.After(30 * time.Second):
		fail("daemon did not exit within 30 s of SIGTERM")
	}

	med := median(idle)
	cpu := float64(cpu1-cpu0) / clockTicks / float64(cycles)
	dcpu := float64(dcpu1-dcpu0) / clockTicks / float64(cycles)
	b.ReportMetric(float64(med.Nanoseconds()), "ns/op")
	b.ReportMetric(med.Seconds(), "idle-cycle-s")
	b.ReportMetric(first.Seconds(), "first-cycle-s")
	b.ReportMetric(busy.Seconds(), "busy-cycle-s")
	b.ReportMetric(float64(rss)/1024, "peak-rss-MB")
	b.ReportMetric(float64(rssIdle)/1024, "idle-rss-MB")
	b.ReportMetric(float64(hwmIdle)/1024, "idle-peak-rss-MB")
	b.ReportMetric(float64(rssIdle)/float64(bc.accounts), "idle-rss-KB/account")
	b.ReportMetric(cpu, "cpu-per-idle-cycle-s")
	b.ReportMetric(cpu*1e6/float64(bc.accounts), "cpu-us/account/idle-cycle")
	b.ReportMetric(dcpu, "dovecot-cpu-per-idle-cycle-s")
	b.ReportMetric(float64(median(idlePolls).Microseconds())/1000, "idle-poll-ms-p50")
	b.Logf("daemon answering after %v; first cycle (%d messages) %v; peak RSS after it %.1f MB",
		up.Round(time.Millisecond), bc.accounts*bc.initial, first.Round(time.Millisecond), float64(rssFirst)/1024)
	b.Logf("idle cycles %v; per poll p50 %v p90 %v max %v; sum of poll times / wall = %.2f sessions in parallel",
		idle, median(idlePolls), pct(idlePolls, 0.9), slices.Max(idlePolls), float64(sum(idlePolls))/float64(sum(idle)))
	b.Logf("busy cycle %v (%d messages); per poll p50 %v p90 %v; %.2f sessions in parallel",
		busy.Round(time.Millisecond), delivered, median(busyPolls), pct(busyPolls, 0.9), float64(sum(busyPolls))/float64(busy))
	b.Logf("daemon CPU %.3f s per idle cycle (%.3f ms per account), dovecot CPU %.3f s per idle cycle; "+
		"RSS after the idle cycles %.1f MB (%.1f KB per account), peak %.1f MB then, %.1f MB after the busy cycle; %d threads",
		cpu, cpu*1000/float64(bc.accounts), dcpu, float64(rssIdle)/1024, float64(rssIdle)/float64(bc.accounts),
		float64(hwmIdle)/1024, float64(rss)/1024, threads)
	if bc.idleTarget > 0 && med > bc.idleTarget {
		b.Logf("idle cycle %v is over the %v target", med, bc.idleTarget)
	}
	if bc.rssTargetMB > 0 && float64(rss)/1024 > bc.rssTargetMB {
		b.Logf("peak RSS %.1f MB is over the %.0f MB target", float64(rss)/1024, bc.rssTargetMB)
	}
}

// checkResults asserts that every account was polled once without error
// and got want new messages, all delivered and deleted.
func checkResults(b *testing.B, fail func(string, ...any), res []fetch.PollSummary, accounts, want int) {
	b.Helper()
	if len(res) != accounts {
		fail("%d results; want %d", len(res), accounts)
	}
	for _, r := range res {
		if r.Err != "" || r.New != want || r.Delivered != want || r.Deleted != want || r.Failed != 0 {
			fail("poll of %s: new %d delivered %d deleted %d failed %d err %q; want %d new, delivered and deleted",
				r.Account, r.New, r.Delivered, r.Deleted, r.Failed, r.Err, want)
		}
	}
}

// benchMsgs returns n small messages for user, numbered from first.
func benchMsgs(user string, i, first, n int) [][]byte {
	var out [][]byte
	for k := first; k < first+n; k++ {
		out = append(out, fmt.Appendf(nil, "From: sender@example.net\r\nTo: %s@example.com\r\nSubject: bench %d/%d\r\nMessage-ID: <%d.%d@bench.example>\r\n\r\n%s\r\n",
			user, i, k, i, k, strings.Repeat("benchmark body line\r\n", 20)))
	}
	return out
}

func benchTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// procStatusKB reads a numeric field of /proc/PID/status (kB for Vm*).
func procStatusKB(b *testing.B, pid int, field string) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					b.Fatal(err)
				}
				return n
			}
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// procStat returns the fields of /proc/PID/stat after the command name
// (field 3, the state, is index 0); nil if the process is gone.
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

func statField(f []string, n int) int64 {
	// n is the 1-based field number of proc(5); f starts at field 3.
	v, _ := strconv.ParseInt(f[n-3], 10, 64)
	return v
}

// procCPU is the process's own user+system time in clock ticks.
func procCPU(b *testing.B, pid int) int64 {
	b.Helper()
	f := procStat(pid)
	if f == nil {
		b.Fatalf("process %d is gone", pid)
	}
	return statField(f, 14) + statField(f, 15)
}

// dovecotMaster finds the dovecot master this test binary started (our
// child, leader of its own process group); 0 if not found.
func dovecotMaster(b *testing.B) int {
	b.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		f := procStat(pid)
		if f != nil && strings.TrimSpace(string(comm)) == "dovecot" && statField(f, 4) == int64(os.Getpid()) {
			return pid
		}
	}
	b.Log("dovecot master not found: no dovecot CPU figures")
	return 0
}

// dovecotCPU is the CPU time of the whole dovecot instance in clock ticks:
// every process of the master's process group, with the children each one
// has reaped (the short-lived pop3-login and pop3 processes end up in the
// master's cutime/cstime).
func dovecotCPU(b *testing.B, master int) int64 {
	b.Helper()
	if master == 0 {
		return 0
	}
	var total int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := procStat(pid)
		if f == nil || statField(f, 5) != int64(master) {
			continue
		}
		total += statField(f, 14) + statField(f, 15) + statField(f, 16) + statField(f, 17)
	}
	return total
}

func median(d []time.Duration) time.Duration { return pct(d, 0.5) }

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s)-1)*p+0.5))]
}

func sum(d []time.Duration) time.Duration {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t
}

// benchProf profiles the daemon of a benchmark: POPFETCH_BENCH_PPROF=DIR
// builds popfetch with the build tag popfetch_pprof (pprof_bench.go: the
// net/http/pprof handlers on POPFETCH_PPROF_LISTEN) and writes DIR/cpu.pprof
// (idle cycles run back to back while the profile is taken), DIR/heap.pprof
// (after a GC, the idle steady state) and DIR/goroutine.txt. Read them with
// `go tool pprof -top DIR/cpu.pprof`.
type benchProf struct {
	dir, bin, addr string
}

func benchProfiler(b *testing.B) *benchProf {
	dir := os.Getenv("POPFETCH_BENCH_PPROF")
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	p := &benchProf{dir: dir, bin: filepath.Join(b.TempDir(), "popfetch-pprof")}
	build := exec.Command("go", "build", "-tags", "popfetch_pprof", "-o", p.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build -tags popfetch_pprof: %v\n%s", err, out)
	}
	addr, err := freeLoopbackPort()
	if err != nil {
		b.Fatal(err)
	}
	p.addr = addr
	return p
}

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// profile takes a CPU profile of at least 10 s while running cycle again
// and again, then the heap and the goroutines.
func (p *benchProf) profile(b *testing.B, cycle func()) {
	b.Helper()
	get := func(path, file string) {
		b.Helper()
		resp, err := http.Get("http://" + p.addr + path)
		if err != nil {
			b.Fatalf("pprof %s: %v", path, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("pprof %s: %s %v", path, resp.Status, err)
		}
		if err := os.WriteFile(filepath.Join(p.dir, file), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		get("/debug/pprof/profile?seconds=10", "cpu.pprof")
	}()
	n := 0
	for {
		select {
		case <-done:
			get("/debug/pprof/heap?gc=1", "heap.pprof")
			get("/debug/pprof/goroutine?debug=1", "goroutine.txt")
			b.Logf("profiled %d idle cycles: %s", n, p.dir)
			return
		default:
		}
		cycle()
		n++
	}
}
