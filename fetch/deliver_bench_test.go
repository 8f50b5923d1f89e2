package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
	"github.com/popfetch/popfetch/rcfile"
)

// smallMessage is a typical small message of about 3 KB: a dozen trace
// and author fields, then a text body.
func smallMessage(i int) pop3test.Message {
	var b strings.Builder
	b.WriteString("Return-Path: <news@example.net>\r\nDelivered-To: alice@example.com\r\n")
	for j := range 3 {
		fmt.Fprintf(&b, "Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n\tby mx.isp.example with ESMTPS id %x; Wed, 25 Nov 2026 10:00:0%d +0000\r\n", j, j, j+1, 0xabc0+i, j)
	}
	fmt.Fprintf(&b, "From: News <news@example.net>\r\nTo: Alice <alice@example.com>\r\nSubject: report %d\r\nMessage-ID: <%d.bench@example.net>\r\n", i, i)
	b.WriteString("Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < 3000 {
		b.WriteString("0123456789 abcdefghij 0123456789 abcdefghij 0123456789 abcd\r\n")
	}
	return pop3test.Message{UID: fmt.Sprintf("uid-%06d", i), Data: []byte(b.String())}
}

// BenchmarkDeliverSmall is one poll (delete mode) of 2000 small messages
// from pop3test into a Maildir: the whole client side of a session
// (pipelined commands, spooling, identity, the journal, the Maildir
// copy), and the test server's side in the same process. The Maildir
// and the journal are on /dev/shm when it exists, so that the figures
// show CPU rather than fsync waits. One op is one poll; ns/msg (wall)
// and cpu-ns/msg (user+sys of the whole process, server included) are
// reported too.
func BenchmarkDeliverSmall(b *testing.B) {
	const n = 2000
	msgs := make([]pop3test.Message, n)
	for i := range msgs {
		msgs[i] = smallMessage(i)
	}
	srv := pop3test.NewServer(b, pop3test.Options{})
	base := b.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "popfetch-bench-"); err == nil {
			base = d
			b.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	b.ReportAllocs()
	var cpu time.Duration // user+sys of the process during the polls
	run := 0
	for b.Loop() {
		b.StopTimer()
		run++
		dir := filepath.Join(base, fmt.Sprint(run))
		srv.SetMessages(msgs)
		a := &rcfile.Account{
			Name: "bench", Server: srv.Host(), Port: srv.Port(), TLS: rcfile.TLSNone,
			Username: "user", Password: rcfile.Password{Inline: "pass"},
			Timeout:  30 * time.Second,
			Deliver:  rcfile.Destination{Maildir: filepath.Join(dir, "Maildir")},
			StateDir: filepath.Join(dir, "state"),
		}
		b.StartTimer()
		before := cpuTime(b)
		res := (&Poller{}).Poll(context.Background(), a)
		cpu += cpuTime(b) - before
		b.StopTimer()
		if res.Err != nil || res.Delivered != n || res.Deleted != n {
			b.Fatalf("Poll = %+v", res)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/msg")
}

// cpuTime returns the user and system CPU time the process has used:
// on a shared machine it varies less than the wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
