package ldapdir

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// fakeServer is a minimal LDAP server on loopback for what slapd cannot be
// made to do: answer a request in a chosen way (or never), and record the
// operations it received.
type fakeServer struct {
	ln   net.Listener
	mu   sync.Mutex
	ops  []int // application tags of the requests received
	wg   sync.WaitGroup
	done chan struct{}
}

// answer returns the response packets to one request (op is the protocol
// operation, tag its application tag); nil means no answer, ever.
type answer func(id int64, tag int, op *ber.Packet) []*ber.Packet

// startFake listens on 127.0.0.1; with tlsConfig it is an ldaps server.
func startFake(t *testing.T, tlsConfig *tls.Config, reply answer) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, done: make(chan struct{})}
	t.Cleanup(func() {
		close(f.done)
		ln.Close()
		f.wg.Wait()
	})
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tlsConfig != nil {
				c = tls.Server(c, tlsConfig)
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				go func() { <-f.done; c.Close() }()
				f.serve(c, reply)
			}()
		}
	}()
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) received() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.ops...)
}

func (f *fakeServer) serve(c net.Conn, reply answer) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		p, err := ber.ReadPacket(r)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		op := p.Children[1]
		tag := int(op.Tag)
		f.mu.Lock()
		f.ops = append(f.ops, tag)
		f.mu.Unlock()
		if tag == ldap.ApplicationUnbindRequest {
			return
		}
		for _, resp := range reply(id, tag, op) {
			if _, err := c.Write(resp.Bytes()); err != nil {
				return
			}
		}
	}
}

// result is an LDAPResult envelope (RFC 4511 section 4.1.9) of the given
// application tag.
func result(id int64, appTag ber.Tag, code uint16, diag string) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appTag, nil, "Response")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(code), "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	p.AppendChild(op)
	return p
}

// startSilent accepts connections and never reads or writes.
func startSilent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// entry is a SearchResultEntry (RFC 4511 section 4.5.2).
func entry(id int64, dn string, attrs map[string][]string) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "Entry")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "objectName"))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attributes")
	for name, vals := range attrs {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attribute")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		for _, v := range vals {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "value"))
		}
		a.AppendChild(set)
		list.AppendChild(a)
	}
	op.AppendChild(list)
	p.AppendChild(op)
	return p
}
