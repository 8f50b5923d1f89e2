package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/dovecottest"
)

// The memory a one-shot fetch may use, whatever the size of the message:
// a message is streamed from the socket into its Maildir file, never held
// whole. The fetch runs with GOMEMLIMIT at bigMemLimit (the Go runtime
// then collects hard before it grows past it) and its peak resident set
// (VmHWM of /proc/PID/status, sampled while it runs; no cgroup, no
// ulimit) must stay at or below bigPeakMax.
const (
	bigMemLimit = "16MiB"
	bigPeakMax  = 24 << 10 // KiB
)

// TestFetchBigMessageMemory fetches one 50 MB message (and, with
// POPFETCH_BIG=1, one of 500 MB as well) from a real dovecot with
// `popfetch fetch` in a child process and requires its peak RSS to stay
// within bigPeakMax, and the delivered copy, after popfetch's Received
// field, to be the stored message byte for byte (both LF: dovecot sends
// CRLF and the Maildir copy is stored with LF line ends).
func TestFetchBigMessageMemory(t *testing.T) {
	sizes := []int64{50 << 20}
	if os.Getenv("POPFETCH_BIG") == "1" {
		sizes = append(sizes, 500<<20)
	}
	srv := dovecottest.Start(t, dovecottest.Options{})
	for _, size := range sizes {
		t.Run(fmt.Sprintf("%dMB", size>>20), func(t *testing.T) {
			testBigMessage(t, srv, size)
		})
	}
}

func testBigMessage(t *testing.T, srv *dovecottest.Server, size int64) {
	user := fmt.Sprintf("big%d", size>>20)
	mb := srv.AddUser(t, user, "pw-"+user)
	seed := uint64(size)
	putStreamed(t, mb, func(w io.Writer) error { return bigMessage(w, size, seed) })

	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	rc := filepath.Join(dir, "popfetch.hcl")
	writeFile(t, rc, rcText(filepath.Join(dir, "state"), nil, rcAccount{name: "big", port: srv.PlainPort,
		user: mb.User, pass: mb.Pass, maildir: maildir, extra: []string{`timeout = "60s"`}}))

	cmd := exec.Command(popfetchBin, "-f", rc, "fetch")
	cmd.Env = append(os.Environ(), "GOMEMLIMIT="+bigMemLimit)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// VmHWM only grows, so the last sample before the exit is the peak
	// but for the last few milliseconds; the message is held (or
	// streamed) for far longer than the sampling period.
	var peak int64
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			if kb, ok := vmHWM(cmd.Process.Pid); ok {
				peak = max(peak, kb)
			}
			if time.Since(start) > 5*time.Minute {
				cmd.Process.Kill()
			}
		}
	}
	took := time.Since(start)
	if err != nil {
		t.Fatalf("popfetch fetch: %v\n%s", err, out.String())
	}
	t.Logf("%d MB message fetched in %v, peak RSS %.1f MiB (GOMEMLIMIT=%s)", size>>20, took.Round(time.Millisecond), float64(peak)/1024, bigMemLimit)
	if n := mb.Count(t); n != 0 {
		t.Errorf("server still holds %d messages; want 0 (keep = false)", n)
	}
	files := maildirFiles(t, maildir)
	if len(files) != 1 {
		t.Fatalf("Maildir holds %d messages; want 1", len(files))
	}
	compareStreamed(t, files[0], func(w io.Writer) error { return bigMessage(w, size, seed) })
	if peak == 0 {
		t.Fatal("no VmHWM sample of the fetch")
	}
	if peak > bigPeakMax {
		t.Errorf("peak RSS of popfetch fetch: %.1f MiB for a %d MB message; want at most %d MiB", float64(peak)/1024, size>>20, bigPeakMax>>10)
	}
}

// vmHWM returns the peak resident set of pid in KiB; false once it has
// exited (a zombie's status has no Vm lines).
func vmHWM(pid int) (int64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// bigMessage writes a message of about size bytes with LF line ends, the
// same for the same seed: a header, then lines of every kind that
// RETR's transparency and line handling must carry through unchanged:
// short and empty lines, lines that start with one or two dots, a line
// that is a lone dot, "From " lines, lines longer than RFC 5322's 998,
// some of many kilobytes, and trailing white space.
func bigMessage(w io.Writer, size int64, seed uint64) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	rng := rand.New(rand.NewPCG(seed, 10))
	fmt.Fprintf(bw, "From: Big Sender <big@example.net>\nTo: rcpt@example.com\nSubject: a message of %d bytes\nMessage-ID: <big-%d@example.net>\nX-Seq: 1\n\n", size, seed)
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_=+/()<>"
	line := make([]byte, 0, 64<<10)
	var n int64
	for i := 0; n < size; i++ {
		line = line[:0]
		switch k := rng.IntN(100); {
		case k < 5:
			// empty line
		case k < 12:
			line = append(line, '.')
		case k < 15:
			line = append(line, ".."...)
		case k < 16:
			line = append(line, '.') // a lone dot: the end of a reply unless stuffed
			bw.Write(line)
			bw.WriteByte('\n')
			n += 2
			continue
		case k < 19:
			line = append(line, "From "...)
		case k < 21:
			// long: past 998 octets, sometimes far past
			for range 1000 + rng.IntN(20000) {
				line = append(line, alpha[rng.IntN(len(alpha))])
			}
		}
		for range rng.IntN(120) {
			line = append(line, alpha[rng.IntN(len(alpha))])
		}
		line = strconv.AppendInt(line, int64(i), 10)
		if rng.IntN(50) == 0 {
			line = append(line, " \t"...)
		}
		line = append(line, '\n')
		bw.Write(line)
		n += int64(len(line))
	}
	return bw.Flush()
}

// putStreamed stores one message written by gen in mb's new/, the way
// dovecottest's Put does (tmp/, owner, rename), without holding it in
// memory.
func putStreamed(t *testing.T, mb *dovecottest.Mailbox, gen func(io.Writer) error) {
	t.Helper()
	fi, err := os.Stat(mb.Maildir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	name := fmt.Sprintf("%d.M0P%d.popfetchbig", time.Now().Unix(), os.Getpid())
	tmp := filepath.Join(mb.Maildir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen(f); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mb.Maildir, "new", name)); err != nil {
		t.Fatal(err)
	}
}

// compareStreamed requires the file at path to be popfetch's Received
// field (folded over several lines) followed by exactly what gen writes,
// comparing as it reads: the 500 MB variant is never held in memory.
func compareStreamed(t *testing.T, path string, gen func(io.Writer) error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := bufio.NewReaderSize(f, 64<<10)
	first, err := got.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "Received: ") {
		t.Fatalf("the delivered copy does not start with popfetch's Received field: %q (%v)", first, err)
	}
	for {
		b, err := got.Peek(1)
		if err != nil || (b[0] != ' ' && b[0] != '\t') {
			break
		}
		if _, err := got.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(gen(pw)) }()
	defer pr.Close()
	want := bufio.NewReaderSize(pr, 64<<10)
	var off int64
	gb, wb := make([]byte, 32<<10), make([]byte, 32<<10)
	for {
		gn, gerr := io.ReadFull(got, gb)
		wn, werr := io.ReadFull(want, wb)
		if !bytes.Equal(gb[:gn], wb[:wn]) {
			i := 0
			for i < min(gn, wn) && gb[i] == wb[i] {
				i++
			}
			lo := max(0, i-80)
			t.Fatalf("the delivered copy differs from the stored message at byte %d after the Received field:\ngot  %q\nwant %q",
				off+int64(i), gb[lo:min(gn, i+80)], wb[lo:min(wn, i+80)])
		}
		off += int64(gn)
		if gerr != nil || werr != nil {
			if (gerr == io.EOF || gerr == io.ErrUnexpectedEOF) && (werr == io.EOF || werr == io.ErrUnexpectedEOF) {
				return
			}
			t.Fatalf("comparing the delivered copy at byte %d: read %v, generate %v", off, gerr, werr)
		}
	}
}
