package pop3

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3test"
)

// TestExchange: a command answered with continuations (RFC 5034 §4), as a
// SASL AUTH is, against pop3test. Each step is one line out and one reply
// in; the reply bookkeeping holds across the exchange.
func TestExchange(t *testing.T) {
	// serve answers AUTH with the given continuation lines, reading one
	// client line after each, and ends with final.
	serve := func(final string, conts ...string) func(c *pop3test.Conn) {
		return func(c *pop3test.Conn) {
			for _, l := range conts {
				if c.WriteLine(l) != nil {
					return
				}
				if _, err := c.ReadLine(); err != nil {
					return
				}
			}
			c.WriteLine(final)
		}
	}
	type step struct {
		line string
		want Reply
	}
	for _, tt := range []struct {
		name    string
		fault   func(c *pop3test.Conn)
		steps   []step
		wantErr error // of the last step; nil = the session goes on
		respErr string
	}{
		{name: "challenge, response, +OK", fault: serve("+OK welcome", "+ dGVzdA=="),
			steps: []step{{"AUTH X", Reply{Continuation: true, Text: []byte("dGVzdA==")}}, {"dXNlcg==", Reply{Text: []byte("welcome")}}}},
		{name: "empty challenges, both spellings", fault: serve("+OK", "+", "+ "),
			steps: []step{{"AUTH X", Reply{Continuation: true, Text: []byte{}}}, {"", Reply{Continuation: true, Text: []byte{}}}, {"", Reply{}}}},
		{name: "refused at once", fault: serve("-ERR [AUTH] no such mechanism"),
			steps: []step{{"AUTH X", Reply{}}}, respErr: "AUTH"},
		{name: "cancelled", fault: serve("-ERR cancelled", "+ Y2hhbGxlbmdl"),
			steps: []step{{"AUTH X", Reply{Continuation: true, Text: []byte("Y2hhbGxlbmdl")}}, {"*", Reply{}}}, respErr: "-"},
		{name: "surplus after a continuation", fault: serve("+OK", "+ YQ==\r\n+OK early"),
			steps: []step{{"AUTH X", Reply{Continuation: true, Text: []byte("YQ==")}}, {"Yg==", Reply{}}}, wantErr: ErrSurplus},
		{name: "oversized challenge", fault: serve("+OK", "+ "+strings.Repeat("QUFB", 4096)),
			steps: []step{{"AUTH X", Reply{}}}, wantErr: ErrBudget},
		{name: "not a continuation", fault: serve("+OK", "+OKAY"),
			steps: []step{{"AUTH X", Reply{}}}, wantErr: ErrProtocol},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.Options{Capa: []string{"USER", "UIDL", "SASL X"},
				Faults: []pop3test.Fault{{Cmd: "AUTH", Action: pop3test.Custom, Func: tt.fault}}})
			c, err := Dial(context.Background(), plainOptions(srv))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i, s := range tt.steps {
				r, err := c.Exchange("AUTH", s.line, 512)
				if i < len(tt.steps)-1 {
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				} else {
					switch {
					case tt.wantErr != nil:
						if !errors.Is(err, tt.wantErr) || c.Broken() == nil {
							t.Fatalf("step %d: %v (broken %v); want %v, the session ended", i, err, c.Broken(), tt.wantErr)
						}
						return
					case tt.respErr != "":
						var re *RespError
						if !errors.As(err, &re) || tt.respErr != "-" && re.Code != tt.respErr || re.Cmd != "AUTH" {
							t.Fatalf("step %d: %v; want a -ERR with code %q", i, err, tt.respErr)
						}
					case err != nil:
						t.Fatalf("step %d: %v", i, err)
					}
				}
				if r.Continuation != s.want.Continuation || string(r.Text) != string(s.want.Text) {
					t.Fatalf("step %d: reply %+v; want %+v", i, r, s.want)
				}
			}
			// The exchange is over and in step: the next command works.
			if c.Broken() != nil || c.due != 0 || c.cont {
				t.Fatalf("after the exchange: broken %v, due %d, cont %v", c.Broken(), c.due, c.cont)
			}
			if err := c.capa(); err != nil || !slices.Contains(c.caps.sasl, "X") {
				t.Fatalf("CAPA after the exchange: %v, %+v", err, c.caps)
			}
		})
	}
}

// FuzzContinuation: whatever line go-pop3 reports as an unknown response
// comes back whole from unknownResponse, and is a continuation exactly
// when it is "+" or starts with "+ ".
func FuzzContinuation(f *testing.F) {
	f.Add("+ dGVzdA==")
	f.Add("+")
	f.Add("+OKAY")
	f.Add("+ a. Neither -ERR, nor +OK")
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\r\n") {
			return
		}
		pc, _ := goPOP3(t, line+"\r\n")
		_, err := pc.ReadOne()
		if err == nil || !strings.HasPrefix(err.Error(), "unknown response:") {
			return // a status line or an empty one
		}
		got, ok := unknownResponse(err)
		if !ok || string(got) != line {
			t.Fatalf("unknownResponse(%q) = %q, %v; want the line %q", err, got, ok, line)
		}
		text, isCont := continuation(got)
		if want := line == "+" || strings.HasPrefix(line, "+ "); isCont != want || isCont && "+ "+string(text) != line && line != "+" {
			t.Fatalf("continuation(%q) = %q, %v", line, text, isCont)
		}
	})
}
