package filter

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/filter/filtertest"
	"github.com/popfetch/popfetch/internal/testutil"
)

// The real filters, run privately on loopback by filtertest (rspamd,
// clamd with clamav-milter, spamd, spamass-milter): each is started once
// per test binary, on first use, and stopped by TestMain.

func TestMain(m *testing.M) {
	code := m.Run()
	filtertest.Stop()
	os.Exit(code)
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
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(filtertest.EICAR)) + "\r\n--b1--\r\n"
}

// runSteps runs raw through steps (the sample envelope), failing t on
// an error of popfetch's own; the result is closed when t ends.
func runSteps(t *testing.T, steps []Step, raw string) (Result, Verdict) {
	t.Helper()
	env, m := sampleEnv(t, raw)
	res, err := Run(context.Background(), steps, env, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	return res, res.Verdicts[0]
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
	d := filtertest.Rspamd(t)
	f, err := NewMilter("rspamd", "inet:"+d.Addr, MilterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []Step{{Filter: f, Timeout: testutil.Slow(60 * time.Second)}}

	t.Run("clean", func(t *testing.T) {
		res, v := runSteps(t, steps, sampleMessage)
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
		log, _ := os.ReadFile(d.Log)
		if !bytes.Contains(log, []byte("ip: 203.0.113.25")) {
			t.Errorf("rspamd's log does not show the client IP 203.0.113.25:\n%s", filtertest.Tail(log, 1500))
		}
	})
	t.Run("gtube", func(t *testing.T) {
		res, v := runSteps(t, steps, withBody("Spam test\r\n"+gtube+"\r\n"))
		if res.Action != Reject || !strings.Contains(strings.ToLower(v.Reply), "gtube") {
			t.Errorf("GTUBE: %v %q, want reject with rspamd's reply", res.Action, v.Reply)
		}
		t.Logf("GTUBE verdict: %v %q", res.Action, v.Reply)
	})
}

func TestClamav(t *testing.T) {
	d := filtertest.Clam(t)
	f, err := NewMilter("clamav", "inet:"+d.Addr, MilterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []Step{{Filter: f, Timeout: testutil.Slow(30 * time.Second)}}
	t.Run("clean", func(t *testing.T) {
		res, v := runSteps(t, steps, sampleMessage)
		status, _ := headerValue(v, "X-Virus-Status")
		if res.Action != Accept || status != "Clean" {
			t.Errorf("clean message: %v %q, X-Virus-Status %q; changes %v", res.Action, v.Reply, status, v.Changes)
		}
	})
	t.Run("eicar", func(t *testing.T) {
		res, v := runSteps(t, steps, eicarMessage())
		if res.Action != Reject || !strings.Contains(v.Reply, "Popfetch.Test.EICAR") {
			t.Errorf("EICAR: %v %q, want reject naming the signature", res.Action, v.Reply)
		}
		t.Logf("EICAR verdict: %v %q", res.Action, v.Reply)
	})
}
