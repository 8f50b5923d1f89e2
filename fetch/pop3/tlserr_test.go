package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// once fails t unless ErrTLS's text appears in msg at most once: an error
// wrapped twice with its own prefix reads "tls policy not met: tls policy
// not met: ...".
func once(t *testing.T, msg string) {
	t.Helper()
	if n := strings.Count(msg, ErrTLS.Error()); n > 1 {
		t.Errorf("error says %q %d times: %s", ErrTLS.Error(), n, msg)
	}
}

// TestPlainTextAnswer: implicit TLS against a port that speaks plain POP3
// says so, quotes the greeting, and names the settings that fit, instead
// of crypto/tls's "first record does not look like a TLS handshake".
func TestPlainTextAnswer(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.Options{Greeting: "+OK Dovecot ready.", Messages: msgs(1)})
	o := Options{Host: "127.0.0.1", Port: srv.Port(), TLS: TLSImplicit, Timeout: tlsTimeout}
	_, err := Dial(context.Background(), o)
	if !errors.Is(err, ErrTLS) {
		t.Fatalf("Dial = %v; want ErrTLS", err)
	}
	msg := err.Error()
	for _, want := range []string{`answered in plain text ("+OK Dovecot ready.")`, `tls = "starttls"`, `tls = "none"`, "995"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "first record does not look like") {
		t.Errorf("error still crypto/tls's: %s", msg)
	}
	once(t, msg)
	if srv.SentCredentials() {
		t.Error("credentials sent")
	}
}

// TestSTLSThenPlainText: a server that answers STLS with +OK and then
// goes on in plain text is not told to use STLS.
func TestSTLSThenPlainText(t *testing.T) {
	_, serverTLS, _ := pop3test.GenerateCert(t)
	srv := pop3test.NewServer(t, pop3test.Options{STLS: true, TLS: serverTLS, Messages: msgs(1),
		Faults: []pop3test.Fault{{Cmd: "STLS", Action: pop3test.Custom, Func: func(c *pop3test.Conn) {
			c.WriteLine("+OK begin TLS")
			time.Sleep(100 * time.Millisecond) // after the ClientHello
			c.WriteLine("+OK only joking")
		}}}})
	o := Options{Host: "localhost", Port: srv.Port(), TLS: TLSStartTLS, Timeout: tlsTimeout}
	_, err := Dial(context.Background(), o)
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "accepted STLS but went on in plain text") || strings.Contains(err.Error(), "set tls") {
		t.Fatalf("Dial = %v; want ErrTLS saying the server went on in plain text", err)
	}
	once(t, err.Error())
}

func TestPlainAdvice(t *testing.T) {
	for _, tt := range []struct {
		port int
		want string
	}{
		{110, `port 110 is plain POP3: set tls = "starttls"`},
		{2110, `port 2110 does not speak implicit TLS: set tls = "starttls"`},
	} {
		if got := plainAdvice(Options{Port: tt.port}); !strings.HasPrefix(got, tt.want) {
			t.Errorf("plainAdvice(%d) = %q; want prefix %q", tt.port, got, tt.want)
		}
	}
}

// TestSilentPOP3S: a plain-text session against a POP3S port gets no
// greeting (the server waits for a ClientHello); the error says to use
// implicit TLS. greetingError is what connect returns then.
func TestSilentPOP3S(t *testing.T) {
	timeout := &timeoutErr{}
	for _, tt := range []struct {
		o    Options
		want bool
	}{
		{Options{Port: 995, TLS: TLSNone}, true},
		{Options{Port: 995, TLS: TLSStartTLS}, true},
		{Options{Port: 110, TLS: TLSNone}, false},
	} {
		msg := greetingError(timeout, tt.o).Error()
		if got := strings.Contains(msg, `set tls = "implicit"`); got != tt.want {
			t.Errorf("greetingError(%+v) = %q; advice %v, want %v", tt.o, msg, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }

var pinLine = regexp.MustCompile(`tls_fingerprint = "sha256:([0-9a-f]{64})"`)

// TestUntrustedCertificate: a certificate that cannot be verified is
// refused with its key's fingerprint in the form tls_fingerprint takes,
// the line that pins it and whether its name matches the server; with
// that pin the next Dial passes.
func TestUntrustedCertificate(t *testing.T) {
	caPEM, otherName, _ := pop3test.GenerateCert(t, "mail.example.net")
	_, ownName, _ := pop3test.GenerateCert(t, "localhost")
	expired := expiredSelfSigned(t)
	tests := []struct {
		name   string
		server *tls.Config
		ca     []byte
		want   []string
	}{
		{name: "unknown authority", server: ownName, want: []string{"signed by an unknown authority", "its name matches localhost", "and tls_check_name = true"}},
		{name: "other name", server: otherName, ca: caPEM, want: []string{"issued for another name", "its name does NOT match localhost (it is for mail.example.net)", "without tls_check_name = true"}},
		{name: "expired self-signed", server: expired, want: []string{"expired 20", "its name matches localhost", "and tls_check_name = true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.server
			srv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: cfg, Messages: msgs(1)})
			o := Options{Host: "localhost", Port: srv.Port(), TLS: TLSImplicit, Timeout: tlsTimeout}
			if tt.ca != nil {
				o.RootCAs = x509Pool(t, tt.ca)
			}
			_, err := Dial(context.Background(), o)
			if !errors.Is(err, ErrTLS) {
				t.Fatalf("Dial = %v; want ErrTLS", err)
			}
			msg := err.Error()
			once(t, msg)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q: %s", w, msg)
				}
			}
			m := pinLine.FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("error has no tls_fingerprint line: %s", msg)
			}
			if want := pop3test.SPKIPin(t, cfg); m[1] != want {
				t.Fatalf("fingerprint %s; the server's key is %s", m[1], want)
			}
			o.RootCAs = nil
			o.Fingerprint = m[1]
			// The advice works as given: with tls_check_name = true
			// where it suggests it.
			o.CheckName = strings.Contains(msg, "and tls_check_name = true")
			c, err := Dial(context.Background(), o)
			if err != nil {
				t.Fatalf("Dial with the suggested pin = %v", err)
			}
			c.Close()
		})
	}
}

// TestPinCheckName: with a pin the name is not checked unless CheckName;
// then a certificate for another name is refused even with the right key.
func TestPinCheckName(t *testing.T) {
	_, otherName, _ := pop3test.GenerateCert(t, "mail.example.net")
	_, ownName, _ := pop3test.GenerateCert(t, "localhost")
	tests := []struct {
		name      string
		server    string
		checkName bool
		pin       string // "" = the server's own key
		wantErr   string // "" = success
	}{
		{name: "other name, pinned", server: "other"},
		{name: "other name, pinned, check name", server: "other", checkName: true, wantErr: "the certificate is not for localhost (it is for mail.example.net)"},
		{name: "own name, pinned, check name", server: "own", checkName: true},
		{name: "own name, wrong pin, check name", server: "own", checkName: true, pin: strings.Repeat("ab", 32), wantErr: "does not match tls_fingerprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ownName
			if tt.server == "other" {
				cfg = otherName
			}
			srv := pop3test.NewServer(t, pop3test.Options{Implicit: true, TLS: cfg, Messages: msgs(1)})
			o := Options{Host: "localhost", Port: srv.Port(), TLS: TLSImplicit, Timeout: tlsTimeout,
				Fingerprint: tt.pin, CheckName: tt.checkName}
			if o.Fingerprint == "" {
				o.Fingerprint = pop3test.SPKIPin(t, cfg)
			}
			c, err := Dial(context.Background(), o)
			if err == nil {
				c.Close()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Dial = %v; want success", err)
			case tt.wantErr != "" && (!errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Dial = %v; want ErrTLS saying %q", err, tt.wantErr)
			case err != nil:
				once(t, err.Error())
			}
		})
	}
}
