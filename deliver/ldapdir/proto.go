package ldapdir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// The LDAP client side of this package: one request at a time on one
// connection, each response read as one whole message (RFC 4511 section
// 4.1.1) under limits checked before the message is decoded. go-ldap's
// connection is not used: its reader goroutine reads ahead and decodes
// every message into a tree of *ber.Packet (a couple of hundred bytes of
// heap per element, so a message of tiny values costs a hundred times
// its size), and its StartTLS waits without any time limit for a reply
// its reader may already have dropped (an unsolicited notification, or
// a reply with another message ID). go-ldap is still used for what does
// not touch the connection: filters, DNs, controls and result codes.

const (
	// MaxMessageBytes bounds one LDAP message from the server. An entry
	// is one message: an Active Directory group sends at most 1500
	// member values per message (range retrieval); a 100000-member
	// groupOfNames of OpenLDAP fits too.
	MaxMessageBytes = 8 << 20
	// maxElements bounds the BER elements (attribute values, sets,
	// strings...) of one message: decoding costs about 250 bytes of heap
	// per element whatever its size, so this, not the byte count, bounds
	// the memory one message can take (about 32 MiB here).
	maxElements = 1 << 17
)

func init() {
	// A package global of go-asn1-ber that bounds ber.ReadPacket and
	// ber.DecodePacketErr (its default is 2 GiB). In this program only
	// this package decodes BER, and it never decodes more than
	// MaxMessageBytes at once (readMessage checks first): this is a
	// second guard, for a decoding path that might not.
	ber.MaxPacketLengthBytes = MaxMessageBytes
}

// startTLSOID names the StartTLS extended operation (RFC 4511 section
// 4.14.1).
const startTLSOID = "1.3.6.1.4.1.1466.20037"

// client speaks LDAP on one connection, one request at a time.
type client struct {
	conn net.Conn
	r    io.Reader
	id   int64
}

func newClient(c net.Conn, buffered bool) *client {
	cl := &client{conn: c, r: c}
	if buffered {
		// Only once nothing else reads c: a buffer could hold the
		// first bytes of a TLS handshake that follows a reply.
		cl.r = bufio.NewReaderSize(c, 16<<10)
	}
	return cl
}

// send writes one request with the next message ID and returns the ID.
func (cl *client) send(op *ber.Packet, controls ...ldap.Control) (int64, error) {
	cl.id++
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, cl.id, "MessageID"))
	msg.AppendChild(op)
	if len(controls) > 0 {
		cp := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, c := range controls {
			cp.AppendChild(c.Encode())
		}
		msg.AppendChild(cp)
	}
	if _, err := cl.conn.Write(msg.Bytes()); err != nil {
		return 0, err
	}
	return cl.id, nil
}

// errUnsolicited is a message with ID 0 (RFC 4511 section 4.4): the
// server tells why it ends the session (Notice of Disconnection), or
// something this client does not know. Either way the load cannot go on.
var errUnsolicited = errors.New("unsolicited notification from the server")

// receive reads one message answering request id and returns its
// protocolOp (the message's second element) and the message. A message
// with another ID, or an unsolicited notification, is an error: with one
// request at a time there is nothing else a server may send.
func (cl *client) receive(id int64) (*ber.Packet, *ber.Packet, error) {
	msg, err := readMessage(cl.r)
	if err != nil {
		return nil, nil, err
	}
	if len(msg.Children) < 2 {
		return nil, nil, errors.New("malformed LDAP message (fewer than 2 elements)")
	}
	got, ok := msg.Children[0].Value.(int64)
	if !ok {
		return nil, nil, errors.New("malformed LDAP message (no message ID)")
	}
	op := msg.Children[1]
	if got == 0 {
		text := ""
		if err := ldap.GetLDAPError(msg); err != nil {
			text = ": " + err.Error()
		}
		return nil, nil, fmt.Errorf("%w%s", errUnsolicited, text)
	}
	if got != id {
		return nil, nil, fmt.Errorf("a reply with message ID %d to request %d", got, id)
	}
	if op.ClassType != ber.ClassApplication {
		return nil, nil, errors.New("malformed LDAP message (the operation is not of the application class)")
	}
	return op, msg, nil
}

// checkResult checks an LDAPResult reply of the given operation: the right
// operation, and resultCode success.
func checkResult(op, msg *ber.Packet, want ber.Tag) error {
	if op.Tag != want {
		return fmt.Errorf("reply of operation %d, want %d", op.Tag, want)
	}
	return ldap.GetLDAPError(msg)
}

// readMessage reads one BER element from r (an LDAP message), checking
// its size and its number of elements before decoding it.
func readMessage(r io.Reader) (*ber.Packet, error) {
	var hdr [6]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return nil, err
	}
	if hdr[0] != 0x30 {
		return nil, fmt.Errorf("malformed LDAP message (tag %#x, want a SEQUENCE)", hdr[0])
	}
	var n int
	switch l := int(hdr[1]); {
	case l < 0x80:
		n = l
	case l == 0x80:
		// RFC 4511 section 5.1: only the definite form of length.
		return nil, errors.New("malformed LDAP message (indefinite length)")
	default:
		k := l & 0x7f
		if k > 4 {
			return nil, fmt.Errorf("LDAP message of more than %d bytes", MaxMessageBytes)
		}
		if _, err := io.ReadFull(r, hdr[2:2+k]); err != nil {
			return nil, unexpectedEOF(err)
		}
		for _, b := range hdr[2 : 2+k] {
			n = n<<8 | int(b)
		}
	}
	if n > MaxMessageBytes {
		return nil, fmt.Errorf("LDAP message of %d bytes (at most %d)", n, MaxMessageBytes)
	}
	hlen := 2
	if hdr[1] >= 0x80 {
		hlen += int(hdr[1] & 0x7f)
	}
	buf := make([]byte, hlen+n)
	copy(buf, hdr[:hlen])
	if _, err := io.ReadFull(r, buf[hlen:]); err != nil {
		return nil, unexpectedEOF(err)
	}
	if k, err := countElements(buf[hlen:], maxElements); err != nil {
		return nil, err
	} else if k > maxElements {
		return nil, fmt.Errorf("LDAP message of more than %d elements", maxElements)
	}
	p, err := ber.DecodePacketErr(buf)
	if err != nil {
		return nil, fmt.Errorf("malformed LDAP message: %w", err)
	}
	return p, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// countElements counts the BER elements in b, nested ones included,
// stopping past limit. It walks the headers only: a constructed
// element's content is the elements that follow it.
func countElements(b []byte, limit int) (int, error) {
	n := 0
	for i := 0; i < len(b); {
		n++
		if n > limit {
			return n, nil
		}
		constructed := b[i]&0x20 != 0
		if b[i]&0x1f == 0x1f { // high tag number form
			i++
			for i < len(b) && b[i]&0x80 != 0 {
				i++
			}
		}
		i++
		if i >= len(b) {
			return n, errors.New("malformed LDAP message (truncated element)")
		}
		l := int(b[i])
		i++
		if l == 0x80 {
			return n, errors.New("malformed LDAP message (indefinite length)")
		}
		if l > 0x80 {
			k := l & 0x7f
			if k > 4 || i+k > len(b) {
				return n, errors.New("malformed LDAP message (bad length)")
			}
			l = 0
			for _, c := range b[i : i+k] {
				l = l<<8 | int(c)
			}
			i += k
		}
		if l > len(b)-i {
			return n, errors.New("malformed LDAP message (an element longer than the message)")
		}
		if !constructed {
			i += l
		}
	}
	return n, nil
}

// startTLS asks for TLS (RFC 4511 section 4.14) and reads exactly one
// reply: success, or an error. Anything else (an unsolicited
// notification, another message ID) ends the load: the connection is
// still plain, so nothing in it can be trusted.
func (cl *client) startTLS() error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Start TLS")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, startTLSOID, "TLS Extended Command"))
	id, err := cl.send(op)
	if err != nil {
		return err
	}
	rop, msg, err := cl.receive(id)
	if err != nil {
		return err
	}
	return checkResult(rop, msg, ldap.ApplicationExtendedResponse)
}

// bind does a simple bind (RFC 4513 section 5.1); name "" and password ""
// is the anonymous bind.
func (cl *client) bind(name, password string) error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "User Name"))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, "Password"))
	id, err := cl.send(op)
	if err != nil {
		return err
	}
	rop, msg, err := cl.receive(id)
	if err != nil {
		return err
	}
	return checkResult(rop, msg, ldap.ApplicationBindResponse)
}

// searchReq is one search request (RFC 4511 section 4.5.1).
type searchReq struct {
	base      string
	scope     int
	filter    *ber.Packet
	attrs     []string
	timeLimit int
	controls  []ldap.Control
}

// search sends req and hands each entry to fn as it arrives (only the
// attributes fn's caller asked for are decoded, see keep); it returns the
// controls of the final SearchResultDone, which must say success.
// References (referrals to other servers) are not followed.
func (cl *client) search(req searchReq, keep func(attr string) bool, fn func(*ldap.Entry) error) ([]ldap.Control, error) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, req.base, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(req.scope), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ldap.NeverDerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(0), "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(min(max(req.timeLimit, 0), math.MaxInt32)), "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	op.AppendChild(req.filter)
	ap := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range req.attrs {
		ap.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(ap)
	id, err := cl.send(op, req.controls...)
	if err != nil {
		return nil, err
	}
	for {
		rop, msg, err := cl.receive(id)
		if err != nil {
			return nil, err
		}
		switch rop.Tag {
		case ldap.ApplicationSearchResultEntry:
			e, err := decodeEntry(rop, keep)
			if err != nil {
				return nil, err
			}
			if err := fn(e); err != nil {
				return nil, err
			}
		case ldap.ApplicationSearchResultReference, ldap.ApplicationIntermediateResponse:
			// Not followed; nothing to read.
		case ldap.ApplicationSearchResultDone:
			if err := ldap.GetLDAPError(msg); err != nil {
				return nil, err
			}
			var controls []ldap.Control
			if len(msg.Children) > 2 {
				for _, c := range msg.Children[2].Children {
					d, err := ldap.DecodeControl(c)
					if err != nil {
						return nil, fmt.Errorf("malformed control: %w", err)
					}
					controls = append(controls, d)
				}
			}
			return controls, nil
		default:
			return nil, fmt.Errorf("reply of operation %d to a search", rop.Tag)
		}
	}
}

// decodeEntry reads a SearchResultEntry: its DN and the attributes keep
// accepts (the others are not converted at all).
func decodeEntry(op *ber.Packet, keep func(string) bool) (*ldap.Entry, error) {
	if len(op.Children) != 2 {
		return nil, errors.New("malformed search entry")
	}
	dn, ok := op.Children[0].Value.(string)
	if !ok {
		return nil, errors.New("malformed search entry (no DN)")
	}
	e := &ldap.Entry{DN: dn}
	for _, a := range op.Children[1].Children {
		if len(a.Children) != 2 {
			return nil, errors.New("malformed search entry (attribute)")
		}
		name, ok := a.Children[0].Value.(string)
		if !ok {
			return nil, errors.New("malformed search entry (attribute name)")
		}
		if !keep(name) {
			continue
		}
		vals := make([]string, 0, len(a.Children[1].Children))
		for _, v := range a.Children[1].Children {
			s, ok := v.Value.(string)
			if !ok {
				s = string(v.ByteValue) // binary values: ber leaves Value nil
			}
			vals = append(vals, s)
		}
		e.Attributes = append(e.Attributes, &ldap.EntryAttribute{Name: name, Values: vals})
	}
	return e, nil
}

// keepAttrs accepts the attributes in attrs (any case) and, for range,
// the range options of that attribute ("member;range=0-1499").
func keepAttrs(attrs []string, ranged string) func(string) bool {
	return func(name string) bool {
		for _, a := range attrs {
			if strings.EqualFold(name, a) {
				return true
			}
		}
		return ranged != "" && len(name) > len(ranged) && strings.EqualFold(name[:len(ranged)+1], ranged+";")
	}
}
