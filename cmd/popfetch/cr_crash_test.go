package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// crMixMessages are 200 messages that spell their line ends in every way
// a server may hand them over: bare CRs in the body, "\r\r\n", a bare CR
// last before the reply's final CRLF, a message without the empty line
// that ends the header, a bare CR in the header (which the Maildir copy
// turns into a line end; if that makes the empty line that ends the
// copy's header, the message is documented to come twice at worst,
// never lost), and messages larger than the
// spool's memory (256 KiB, so the spool file and the digest on the way
// in are used) with CRs on both sides of eolReader's 64 KiB chunk edges.
func crMixMessages(to string) ([][]byte, map[int]bool) {
	var raw [][]byte
	mayDup := map[int]bool{}
	for i := 1; i <= 200; i++ {
		head := fmt.Sprintf("From: a@example.net\r\nTo: %s\r\nSubject: cr %d\r\nMessage-ID: <cr-%d@example.net>\r\nX-Seq: %d\r\n", to, i, i, i)
		var body string
		switch i % 10 {
		case 1:
			body = "a\rb\r\r\n\r\n\rc\r\n\n\r\r\rd\r\n"
		case 2:
			body = "last line ends in a bare CR\r" // the server adds CRLF
		case 3:
			// A line end in the copy's header, not an empty line:
			// the copy has the message's body.
			head += "X-Note: a bare\rCR in the header\r\n"
		case 4:
			// The empty line that ends the copy's header, whose
			// body is then not the message's.
			head += "X-Note: ends the copy's header\r\r\nX-After: x\r\n"
			mayDup[i] = true
		case 5:
			raw = append(raw, []byte(head)) // no empty line, no body
			continue
		case 6:
			body = "\r\r\n\r\r\n"
		default:
			body = strings.Repeat("body line\r\n", i%7+1)
		}
		msg := head + "\r\n" + body
		if i%25 == 0 {
			msg = bigCR(msg, 256<<10+i*1000)
		}
		raw = append(raw, []byte(msg))
	}
	return raw, mayDup
}

// bigCR is msg made at least size bytes by lines of text with bare CRs,
// CRLFs and "\r\r\n" on both sides of every 64 KiB edge of the message.
func bigCR(msg string, size int) string {
	var b bytes.Buffer
	b.WriteString(msg)
	for k := 0; b.Len() < size; k++ {
		edge := (b.Len()/(64<<10) + 1) * (64 << 10)
		for b.Len() < edge-2-k%3 {
			b.WriteString(strings.Repeat("w", min(70, edge-2-k%3-b.Len())))
			if b.Len() < edge-8 {
				b.WriteString([]string{"\r\n", "\r", "\r\r\n", "\n"}[b.Len()%4])
			}
		}
		b.WriteString([]string{"\r", "\r\n", "\r\r\n", "\r\r"}[k%4])
		b.WriteString("after the edge\r")
	}
	b.WriteString("\r\n")
	return b.String()
}

// TestCommitCrashBareCRFake is TestCommitCrashFake with crMixMessages:
// killed at each step, nothing is lost, and a single-drop account gets
// no duplicate but of a message whose bare CR in the header ends the
// copy's header, at most once each.
func TestCommitCrashBareCRFake(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds a second binary, many runs")
	}
	for _, tc := range []struct {
		multi, keep, power bool
		folder             string
		steps              []int // indexes into commitCrashSteps
	}{
		{steps: []int{0, 1, 2, 3, 4, 5}},
		{keep: true, steps: []int{2, 5}},
		{multi: true, steps: []int{1, 2, 5}},
		{power: true, steps: []int{2, 4}},
		{multi: true, power: true, steps: []int{2}},
		{folder: "Lists.dev", steps: []int{1, 2}},
	} {
		for _, i := range tc.steps {
			cs := commitCrashSteps[i]
			t.Run(fmt.Sprintf("multidrop=%v/keep=%v/power=%v/folder=%q/%s:%d", tc.multi, tc.keep, tc.power, tc.folder, cs.step, cs.n), func(t *testing.T) {
				srv := pop3test.NewServer(t, pop3test.Options{User: "user", Pass: "pass"})
				runCommitCrashMessages(t, fakeCrashServerSeqs(t, srv), tc.multi, tc.keep, cs.step, cs.n, tc.power, tc.folder, crMixMessages)
			})
		}
	}
}

// TestCommitCrashBareCRDovecot is TestCommitCrashBareCRFake against a
// real dovecot, which serves a Maildir file's bare CRs as they are.
func TestCommitCrashBareCRDovecot(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	steps := []crashStep{{"dir-synced", 40}, {"moved", 40}, {"journal-synced", 2}}
	dovecotCrashRuns(t, "cr", steps, func(t *testing.T, crash crashServer, multi bool, cs crashStep) {
		runCommitCrashMessages(t, crash, multi, false, cs.step, cs.n, false, "", crMixMessages)
	})
}
