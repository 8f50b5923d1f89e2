package ldapdir

import (
	"bytes"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// FuzzReadMessage: readMessage never panics, never returns a message
// larger than MaxMessageBytes or with more than maxElements elements, and
// whatever it returns decodes as an entry or fails cleanly.
func FuzzReadMessage(f *testing.F) {
	f.Add(entry(2, "CN=a,DC=x", map[string][]string{"mail": {"a@x"}, "member;range=0-1": {"cn=b", "cn=c"}}).Bytes())
	f.Add(result(1, ldap.ApplicationBindResponse, 0, "").Bytes())
	f.Add(noticeOfDisconnection().Bytes())
	f.Add([]byte{0x30, 0x80, 0, 0})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x64, 0x81, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _ := countElements(b, maxElements)
		if n > maxElements+1 {
			t.Fatalf("countElements went past its limit: %d", n)
		}
		p, err := readMessage(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(p.Bytes()) > MaxMessageBytes+6 {
			t.Fatalf("message of %d bytes", len(p.Bytes()))
		}
		if len(p.Children) == 2 && p.Children[1].ClassType == ber.ClassApplication && p.Children[1].Tag == ldap.ApplicationSearchResultEntry {
			decodeEntry(p.Children[1], func(string) bool { return true })
		}
	})
}

// TestCountElements: the count readMessage checks before decoding is
// the number of BER elements ber decodes.
func TestCountElements(t *testing.T) {
	for _, p := range []*ber.Packet{
		entry(2, "CN=a,DC=x", map[string][]string{"mail": {"a@x", "b@x"}, "member": {"cn=b"}}),
		result(1, ldap.ApplicationBindResponse, 49, "bad"),
		noticeOfDisconnection(),
	} {
		b := p.Bytes()
		want := 0
		var walk func(*ber.Packet)
		walk = func(p *ber.Packet) {
			want++
			for _, c := range p.Children {
				walk(c)
			}
		}
		d, err := ber.DecodePacketErr(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Children {
			walk(c)
		}
		hlen := 2
		if b[1] > 0x80 {
			hlen += int(b[1] & 0x7f)
		}
		got, err := countElements(b[hlen:], maxElements)
		if err != nil || got != want {
			t.Errorf("countElements = %d, %v; want %d", got, err, want)
		}
	}
}
