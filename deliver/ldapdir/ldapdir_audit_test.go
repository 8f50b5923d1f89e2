package ldapdir

// Probes of a hostile or broken LDAP server: the load must end (within
// Config.Timeout), hold bounded memory, and never report success with a
// directory cut short.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/popfetch/popfetch/deliver/ldapdir/slapdtest"
	"github.com/popfetch/popfetch/fetch/pop3test"
)

// startRaw runs handle on every connection (TLS with tlsConfig, else
// plain) until the test ends.
func startRaw(t *testing.T, tlsConfig *tls.Config, handle func(c net.Conn, r *bufio.Reader)) string {
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
			if tlsConfig != nil {
				c = tls.Server(c, tlsConfig)
			}
			go func() {
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// readOp reads one request and returns its message ID and tag.
func readOp(r *bufio.Reader) (int64, int, *ber.Packet, error) {
	p, err := ber.ReadPacket(r)
	if err != nil {
		return 0, 0, nil, err
	}
	if len(p.Children) < 2 {
		return 0, 0, nil, errors.New("short packet")
	}
	id, _ := p.Children[0].Value.(int64)
	return id, int(p.Children[1].Tag), p.Children[1], nil
}

// noticeOfDisconnection is RFC 4511 section 4.4.1's unsolicited
// notification: message ID 0, an ExtendedResponse naming
// 1.3.6.1.4.1.1466.20036.
func noticeOfDisconnection() *ber.Packet {
	p := result(0, ldap.ApplicationExtendedResponse, ldap.LDAPResultUnavailable, "going down")
	p.Children[1].AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, "1.3.6.1.4.1.1466.20036", "responseName"))
	return p
}

// loadWithin runs Load and fails the test if it has not returned within
// limit (the goroutine is then leaked: the test binary ends soon).
func loadWithin(t *testing.T, c Config, limit time.Duration) (*Snapshot, error) {
	t.Helper()
	type out struct {
		s   *Snapshot
		err error
	}
	ch := make(chan out, 1)
	go func() {
		s, err := Load(context.Background(), c)
		ch <- out{s, err}
	}()
	select {
	case o := <-ch:
		return o.s, o.err
	case <-time.After(limit):
		t.Fatalf("Load has not returned after %v (Timeout %v): it hangs", limit, c.Timeout)
		return nil, nil
	}
}

// TestAuditStartTLSUnsolicitedNotice: a server (or a man in the middle of
// the still plain connection) that answers StartTLS with an unsolicited
// notification (message ID 0) first. go-ldap's reader stops after the
// first packet it reads during StartTLS, the notice is dropped as an
// unknown message ID, and StartTLS waits for a response that nobody
// reads: no request timeout applies to StartTLS, and the connection
// deadline only ends reads. The load hangs for good, holding the
// account's directory lock: the account never polls again, and the
// daemon cannot stop (shutdown waits for the poll; Abort's cancelled
// context does not reach it). The load must end within Timeout, and at
// once when its context is cancelled.
func TestAuditStartTLSUnsolicitedNotice(t *testing.T) {
	addr := startRaw(t, nil, func(c net.Conn, r *bufio.Reader) {
		id, tag, _, err := readOp(r)
		if err != nil || tag != ldap.ApplicationExtendedRequest {
			return
		}
		c.Write(noticeOfDisconnection().Bytes())
		time.Sleep(50 * time.Millisecond)
		c.Write(result(id, ldap.ApplicationExtendedResponse, 0, "").Bytes())
		c.Read(make([]byte, 1)) // hold the connection open
	})
	// Cancelling the context (the daemon's Abort on a second SIGTERM)
	// must end it too.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := Load(ctx, Config{URL: "ldap://" + addr, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: time.Minute})
		done <- err
	}()
	c := Config{URL: "ldap://" + addr, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: time.Second}
	_, err := loadWithin(t, c, 10*time.Second)
	if err == nil {
		t.Fatal("Load succeeded without TLS")
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Load still running 3s after its context was cancelled")
	}
}

// TestStartTLSSuccessWithoutTLS: StartTLS answered "success", then no TLS
// handshake (plain bytes, or silence): an error within Timeout, and no
// bind sent.
func TestStartTLSSuccessWithoutTLS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after []byte
	}{
		{"silence", nil},
		{"plain bind response", result(2, ldap.ApplicationBindResponse, 0, "").Bytes()},
		{"garbage", bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff, 0xff}, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []byte
			addr := startRaw(t, nil, func(c net.Conn, r *bufio.Reader) {
				id, tag, _, err := readOp(r)
				if err != nil || tag != ldap.ApplicationExtendedRequest {
					return
				}
				c.Write(result(id, ldap.ApplicationExtendedResponse, 0, "").Bytes())
				if tc.after != nil {
					c.Write(tc.after)
				}
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					mu.Lock()
					got = append(got, buf[:n]...)
					mu.Unlock()
					if err != nil {
						return
					}
				}
			})
			const pw = "PlainTextPa55"
			c := Config{URL: "ldap://" + addr, BindDN: "cn=r,dc=x", Password: pw, BaseDN: "dc=x", Timeout: time.Second}
			_, err := loadWithin(t, c, 10*time.Second)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if bytes.Contains(got, []byte(pw)) {
				t.Fatal("the password went over the plain connection")
			}
		})
	}
}

// doneWithCookie is a SearchResultDone with a paged results control
// (RFC 2696) carrying cookie ("" = no control at all).
func doneWithCookie(id int64, cookie string) *ber.Packet {
	p := result(id, ldap.ApplicationSearchResultDone, 0, "")
	if cookie != "" {
		ctrls := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		pc := ldap.NewControlPaging(500)
		pc.SetCookie([]byte(cookie))
		ctrls.AppendChild(pc.Encode())
		p.AppendChild(ctrls)
	}
	return p
}

func userEntry(id int64, i int) *ber.Packet {
	return entry(id, fmt.Sprintf("CN=u%d,DC=x", i), map[string][]string{
		"sAMAccountName": {fmt.Sprintf("u%d", i)}, "mail": {fmt.Sprintf("u%d@x.example", i)}})
}

// TestLoadEndlessPagingCookie: a server whose every page carries a
// non-empty cookie. With empty pages the load ends at Timeout with an
// error; with a page that repeats the same entries it ends at MaxEntries.
// Never a success.
func TestLoadEndlessPagingCookie(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	for _, tc := range []struct {
		name    string
		entries int
	}{{"empty pages", 0}, {"repeating page", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, serverTLS, func(id int64, tag int, _ *ber.Packet) []*ber.Packet {
				switch tag {
				case ldap.ApplicationBindRequest:
					return []*ber.Packet{result(id, ldap.ApplicationBindResponse, 0, "")}
				case ldap.ApplicationSearchRequest:
					var out []*ber.Packet
					for i := range tc.entries {
						out = append(out, userEntry(id, i))
					}
					return append(out, doneWithCookie(id, "again"))
				}
				return nil
			})
			c := Config{URL: "ldaps://" + f.addr(), RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x",
				Timeout: time.Second, MaxEntries: 1000}
			t0 := time.Now()
			snap, err := loadWithin(t, c, 10*time.Second)
			if err == nil {
				t.Fatalf("Load succeeded with %d users after endless paging", len(snap.Users))
			}
			if took := time.Since(t0); took > 3*time.Second {
				t.Errorf("took %v", took)
			}
			t.Logf("%v: %v", time.Since(t0), err)
		})
	}
}

// TestLoadTruncatedReplies: the server's whole answer (bind response,
// entries, done) cut after every byte count, then the connection closed:
// every cut is an error, never a directory with fewer users.
func TestLoadTruncatedReplies(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	var stream []byte
	for i := range 3 {
		stream = append(stream, userEntry(2, i).Bytes()...)
	}
	stream = append(stream, doneWithCookie(2, "").Bytes()...)
	cut := 0
	var mu sync.Mutex
	addr := startRaw(t, serverTLS, func(c net.Conn, r *bufio.Reader) {
		mu.Lock()
		k := cut
		mu.Unlock()
		for {
			id, tag, _, err := readOp(r)
			if err != nil {
				return
			}
			switch tag {
			case ldap.ApplicationBindRequest:
				c.Write(result(id, ldap.ApplicationBindResponse, 0, "").Bytes())
			case ldap.ApplicationSearchRequest:
				if id != 2 {
					panic("unexpected message id")
				}
				c.Write(stream[:k])
				return // close
			default:
				return
			}
		}
	})
	c := Config{URL: "ldaps://" + addr, RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: 2 * time.Second}
	for k := 0; k <= len(stream); k++ {
		mu.Lock()
		cut = k
		mu.Unlock()
		snap, err := loadWithin(t, c, 10*time.Second)
		switch {
		case k < len(stream) && err == nil:
			t.Fatalf("cut after %d of %d bytes: success with %d users", k, len(stream), len(snap.Users))
		case k == len(stream) && (err != nil || len(snap.Users) != 3):
			t.Fatalf("whole stream: %v", err)
		}
	}
}

// TestLoadBadBERLengths: BER headers with huge, overlong or indefinite
// lengths: an error, no panic, no allocation of the declared size.
func TestLoadBadBERLengths(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"2^31-1 then close", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02}},
		{"2^32-1", []byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff}},
		{"8-byte length", []byte{0x30, 0x88, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"9-byte length", []byte{0x30, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"octet string of 2^31-1", []byte{0x30, 0x0a, 0x02, 0x01, 0x02, 0x64, 0x05, 0x04, 0x84, 0x7f, 0xff, 0xff, 0xff}},
		{"indefinite primitive", []byte{0x30, 0x80, 0x02, 0x80}},
		{"deep nesting", bytes.Repeat([]byte{0x30, 0x80}, 100000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startRaw(t, serverTLS, func(c net.Conn, r *bufio.Reader) {
				for {
					id, tag, _, err := readOp(r)
					if err != nil {
						return
					}
					if tag == ldap.ApplicationBindRequest {
						c.Write(result(id, ldap.ApplicationBindResponse, 0, "").Bytes())
						continue
					}
					c.Write(tc.raw)
					time.Sleep(100 * time.Millisecond)
					return
				}
			})
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			c := Config{URL: "ldaps://" + addr, RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: 2 * time.Second}
			_, err := loadWithin(t, c, 10*time.Second)
			if err == nil {
				t.Fatal("success")
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("allocated %d MiB for a bad header", grew>>20)
			}
		})
	}
}

// peakHeap samples HeapAlloc until stop is closed and returns the peak.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return out
}

// TestAuditMemoryTinyValues: MaxBytes is meant to bound what one load can
// make us hold. One entry whose attribute has millions of empty values
// (two bytes each on the wire: 04 00) is parsed by go-asn1-ber into one
// *ber.Packet (with a bytes.Buffer and a Children slice) per value before
// ldapdir sees it, about a hundred times the bytes received. With the
// default MaxBytes (256 MiB) that is tens of GiB: the daemon is killed.
// The probe sends 2 MiB within MaxBytes 3 MiB and wants the heap to grow
// by less than 8 times MaxBytes.
func TestAuditMemoryTinyValues(t *testing.T) {
	const n = 1 << 20 // values; 2 MiB on the wire
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	// Built by hand: encoding 4M packets with ber would itself cost GiBs.
	vals := bytes.Repeat([]byte{0x04, 0x00}, n)
	lenBytes := func(l int) []byte { return []byte{0x84, byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)} }
	set := append(append([]byte{0x31}, lenBytes(len(vals))...), vals...)
	typ := []byte{0x04, 0x04, 'm', 'a', 'i', 'l'}
	attr := append(append([]byte{0x30}, lenBytes(len(typ)+len(set))...), append(typ, set...)...)
	attrs := append(append([]byte{0x30}, lenBytes(len(attr))...), attr...)
	dn := []byte{0x04, 0x04, 'C', 'N', '=', 'a'}
	op := append(append([]byte{0x64}, lenBytes(len(dn)+len(attrs))...), append(dn, attrs...)...)
	id := []byte{0x02, 0x01, 0x02}
	msg := append(append([]byte{0x30}, lenBytes(len(id)+len(op))...), append(id, op...)...)
	addr := startRaw(t, serverTLS, func(c net.Conn, r *bufio.Reader) {
		for {
			id, tag, _, err := readOp(r)
			if err != nil {
				return
			}
			switch tag {
			case ldap.ApplicationBindRequest:
				c.Write(result(id, ldap.ApplicationBindResponse, 0, "").Bytes())
			case ldap.ApplicationSearchRequest:
				c.Write(msg)
				c.Write(doneWithCookie(id, "").Bytes())
			default:
				return
			}
		}
	})
	const maxBytes = 3 << 20
	c := Config{URL: "ldaps://" + addr, RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x",
		Timeout: 60 * time.Second, MaxBytes: maxBytes}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := make(chan struct{})
	peak := peakHeap(stop)
	t0 := time.Now()
	_, err := loadWithin(t, c, 90*time.Second)
	close(stop)
	p := <-peak
	grew := int64(p) - int64(base.HeapAlloc)
	t.Logf("load: %v in %v; heap grew by %d MiB for %d MiB received", err, time.Since(t0), grew>>20, len(msg)>>20)
	if grew > 8*maxBytes {
		t.Errorf("heap grew by %d MiB with MaxBytes %d MiB: MaxBytes does not bound memory (x%d)", grew>>20, maxBytes>>20, grew/maxBytes)
	}
}

// TestAuditGroupNestingBlowup: groups nested as a dense DAG (every group
// of one level holds every group of the next). expand walks every path,
// not every group once, so the work is width^depth per group with an
// address: minutes of CPU after the network part, outside Timeout. A
// hostile (or merely baroque) directory stalls every poll of the account.
func TestAuditGroupNestingBlowup(t *testing.T) {
	const width, levels = 20, 6
	dn := func(l, i int) string { return fmt.Sprintf("CN=g%d-%d,DC=x", l, i) }
	mkGroups := func(id int64) []*ber.Packet {
		var out []*ber.Packet
		for l := range levels {
			for i := range width {
				var members []string
				if l == levels-1 {
					members = []string{"CN=u0,DC=x"}
				} else {
					for j := range width {
						members = append(members, dn(l+1, j))
					}
				}
				out = append(out, entry(id, dn(l, i), map[string][]string{
					"mail": {fmt.Sprintf("g%d-%d@x.example", l, i)}, "member": members}))
			}
		}
		return out
	}
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	searches := 0
	var mu sync.Mutex
	f := startFake(t, serverTLS, func(id int64, tag int, _ *ber.Packet) []*ber.Packet {
		switch tag {
		case ldap.ApplicationBindRequest:
			return []*ber.Packet{result(id, ldap.ApplicationBindResponse, 0, "")}
		case ldap.ApplicationSearchRequest:
			mu.Lock()
			searches++
			k := searches
			mu.Unlock()
			if k == 1 {
				return []*ber.Packet{userEntry(id, 0), doneWithCookie(id, "")}
			}
			return append(mkGroups(id), doneWithCookie(id, ""))
		}
		return nil
	})
	c := Config{URL: "ldaps://" + f.addr(), RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x",
		Groups: true, Timeout: 2 * time.Second}
	t0 := time.Now()
	snap, err := loadWithin(t, c, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d groups in %v", len(snap.Groups), time.Since(t0))
	if took := time.Since(t0); took > 2*c.Timeout {
		t.Errorf("load took %v with Timeout %v: group expansion is unbounded", took, c.Timeout)
	}
}

// TestAuditPartialGroupNotRouted: Active Directory returns a group of
// more than 1500 members as "member;range=0-1499" and the rest only on
// request. ldapdir reads the first range and routes the group's address
// to those members alone: a message to "all@" reaches 1500 people, and
// the others never see it, with nothing per message to tell anyone (one
// Info line per loaded copy). A group whose members are not all known
// (ranges not fetched, nesting cut at MaxNestingDepth, members cut at
// MaxEntries) must not route to a part of them: fetch the ranges, or
// leave the address unrouted (the postmaster gets the mail with a
// reason). Here the range is "0-1" of a larger group.
func TestAuditPartialGroupNotRouted(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	var mu sync.Mutex
	searches := 0
	f := startFake(t, serverTLS, func(id int64, tag int, op *ber.Packet) []*ber.Packet {
		switch tag {
		case ldap.ApplicationBindRequest:
			return []*ber.Packet{result(id, ldap.ApplicationBindResponse, 0, "")}
		case ldap.ApplicationSearchRequest:
			mu.Lock()
			searches++
			k := searches
			mu.Unlock()
			done := result(id, ldap.ApplicationSearchResultDone, 0, "")
			switch k {
			case 1:
				return []*ber.Packet{userEntry(id, 0), userEntry(id, 1), userEntry(id, 2), done}
			case 2:
				return []*ber.Packet{entry(id, "CN=All,DC=x", map[string][]string{
					"mail": {"all@x.example"}, "member;range=0-1": {"CN=u0,DC=x", "CN=u1,DC=x"}}), done}
			}
			// A range request (if any): the rest.
			return []*ber.Packet{entry(id, "CN=All,DC=x", map[string][]string{"member;range=2-*": {"CN=u2,DC=x"}}), done}
		}
		return nil
	})
	c := Config{URL: "ldaps://" + f.addr(), RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Groups: true, Timeout: 5 * time.Second}
	snap, err := Load(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := snap.Groups["all@x.example"]; ok && len(m) != 3 {
		t.Errorf("all@x.example routes to %v: a part of its members (u2 is in a range not read)", m)
	}
}

// expiredCert is a self-signed certificate for 127.0.0.1 that expired an
// hour ago, and a pool trusting it.
func expiredCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "expired"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// TestLoadTLSVerified: a certificate for another host name, or an
// expired one, fails the load over ldaps and over StartTLS before any
// bind; the password is never sent.
func TestLoadTLSVerified(t *testing.T) {
	_, wrongHost, wrongPool := pop3test.GenerateCert(t, "ldap.other.example")
	expired, expiredPool := expiredCert(t)
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		pool *x509.CertPool
	}{{"wrong host", wrongHost, wrongPool}, {"expired", expired, expiredPool}} {
		for _, starttls := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s starttls=%v", tc.name, starttls), func(t *testing.T) {
				var mu sync.Mutex
				bound := false
				addr := startRaw(t, nil, func(c net.Conn, r *bufio.Reader) {
					if starttls {
						id, tag, _, err := readOp(r)
						if err != nil || tag != ldap.ApplicationExtendedRequest {
							return
						}
						c.Write(result(id, ldap.ApplicationExtendedResponse, 0, "").Bytes())
					}
					tc := tls.Server(c, tc.cfg)
					if tc.Handshake() != nil {
						return
					}
					tr := bufio.NewReader(tc)
					if _, tag, _, err := readOp(tr); err == nil && tag == ldap.ApplicationBindRequest {
						mu.Lock()
						bound = true
						mu.Unlock()
					}
				})
				scheme := "ldaps://"
				if starttls {
					scheme = "ldap://"
				}
				c := Config{URL: scheme + addr, RootCAs: tc.pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: 2 * time.Second}
				_, err := loadWithin(t, c, 10*time.Second)
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("err %v, want a certificate error", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if bound {
					t.Fatal("a bind was sent")
				}
			})
		}
	}
}

// TestLoadServerOddities: continuation references are ignored (the
// entries count), a referral result, a notice of disconnection in the
// middle of a search (then silence, or a close), a bind success then a
// search error: each is an error or, for references, the entries alone;
// oversized values and entries with thousands of values are skipped and
// noted, bounded.
func TestLoadServerOddities(t *testing.T) {
	_, serverTLS, pool := pop3test.GenerateCert(t, "127.0.0.1")
	ref := func(id int64) *ber.Packet {
		p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
		p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultReference, nil, "Reference")
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "ldap://elsewhere.example/DC=child,DC=x", "uri"))
		p.AppendChild(op)
		return p
	}
	many := make([]string, 5000)
	for i := range many {
		many[i] = fmt.Sprintf("smtp:v%d@x.example", i)
	}
	for _, tc := range []struct {
		name   string
		search func(id int64, c net.Conn)
		users  int // -1: an error is wanted
	}{
		{"continuation reference", func(id int64, c net.Conn) {
			c.Write(userEntry(id, 0).Bytes())
			c.Write(ref(id).Bytes())
			c.Write(doneWithCookie(id, "").Bytes())
		}, 1},
		{"referral result", func(id int64, c net.Conn) {
			c.Write(userEntry(id, 0).Bytes())
			c.Write(result(id, ldap.ApplicationSearchResultDone, ldap.LDAPResultReferral, "go elsewhere").Bytes())
		}, -1},
		{"notice then silence", func(id int64, c net.Conn) {
			c.Write(userEntry(id, 0).Bytes())
			c.Write(noticeOfDisconnection().Bytes())
			c.Read(make([]byte, 1))
		}, -1},
		{"notice then close", func(id int64, c net.Conn) {
			c.Write(userEntry(id, 0).Bytes())
			c.Write(noticeOfDisconnection().Bytes())
		}, -1},
		{"search error after bind", func(id int64, c net.Conn) {
			c.Write(result(id, ldap.ApplicationSearchResultDone, ldap.LDAPResultInsufficientAccessRights, "no").Bytes())
		}, -1},
		{"size limit exceeded with entries", func(id int64, c net.Conn) {
			c.Write(userEntry(id, 0).Bytes())
			c.Write(result(id, ldap.ApplicationSearchResultDone, ldap.LDAPResultSizeLimitExceeded, "").Bytes())
		}, -1},
		{"huge values", func(id int64, c net.Conn) {
			c.Write(entry(id, "CN=big,DC=x", map[string][]string{"sAMAccountName": {strings.Repeat("b", 200<<10)}}).Bytes())
			c.Write(entry(id, "CN=many,DC=x", map[string][]string{"sAMAccountName": {"many"}, "proxyAddresses": many}).Bytes())
			c.Write(entry(id, "CN=longmail,DC=x", map[string][]string{"sAMAccountName": {"lm"}, "mail": {strings.Repeat("m", 200<<10) + "@x.example", "lm@x.example"}}).Bytes())
			c.Write(doneWithCookie(id, "").Bytes())
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startRaw(t, serverTLS, func(c net.Conn, r *bufio.Reader) {
				for {
					id, tag, _, err := readOp(r)
					if err != nil {
						return
					}
					switch tag {
					case ldap.ApplicationBindRequest:
						c.Write(result(id, ldap.ApplicationBindResponse, 0, "").Bytes())
					case ldap.ApplicationSearchRequest:
						tc.search(id, c)
						return
					default:
						return
					}
				}
			})
			c := Config{URL: "ldaps://" + addr, RootCAs: pool, BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", Timeout: 2 * time.Second}
			if tc.users >= 0 {
				c.Timeout = 20 * time.Second // slow under -race
			}
			snap, err := loadWithin(t, c, 30*time.Second)
			switch {
			case tc.users < 0 && err == nil:
				t.Fatalf("success with %d users", len(snap.Users))
			case tc.users >= 0 && err != nil:
				t.Fatal(err)
			case tc.users >= 0 && len(snap.Users) != tc.users:
				t.Fatalf("%d users, want %d: %v", len(snap.Users), tc.users, snap.Users)
			case tc.users >= 0:
				if n := len(snap.Users["many"]); tc.name == "huge values" && n > MaxValuesPerEntry {
					t.Errorf("many has %d addresses", n)
				}
				for _, s := range snap.Skipped {
					if len(s) > 2000 {
						t.Errorf("a Skipped line of %d bytes", len(s))
					}
				}
			}
		})
	}
}

// TestLoadMemberDNEscapes: member values that spell a user's DN with
// other escapes (hex pairs for "," and UTF-8, other case, spaces after
// commas) than the entry's own DN still match it, against real slapd.
func TestLoadMemberDNEscapes(t *testing.T) {
	ldif := slapdtest.ADUser("jsmith", "Smith, José", 512, "jose@example.com") +
		slapdtest.ADUser("plus", "a+b", 512, "plus@example.com") +
		slapdtest.ADUser("hash", "#hash", 512, "hash@example.com") +
		slapdtest.ADGroup("esc", "esc@example.com",
			`CN=Smith\2C Jos\C3\A9, OU=People, DC=Example, DC=Com`,
			`cn=a\+b,ou=people,dc=example,dc=com`,
			`cn=\23hash,ou=people,dc=example,dc=com`)
	s := slapdtest.Start(t, slapdtest.Options{LDIF: ldif})
	c := config(s)
	c.Groups = true
	snap := mustLoad(t, c)
	want := []string{"hash", "jsmith", "plus"}
	if got := snap.Groups["esc@example.com"]; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("esc@example.com = %v, want %v; skipped %q; users %v", got, want, snap.Skipped, snap.Users)
	}
}

// slapdPID finds the slapd process of s by its private directory in the
// command line.
func slapdPID(t *testing.T, s *slapdtest.Server) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmd, []byte("slapd")) && bytes.Contains(cmd, []byte(s.Dir)) {
			return pid
		}
	}
	t.Fatal("slapd process not found")
	return 0
}

// TestLoadSlapdStopped: real slapd frozen (SIGSTOP) before and during a
// paged load of 3000 users: an error within Timeout, no partial
// directory; after SIGCONT the same load returns everything.
func TestLoadSlapdStopped(t *testing.T) {
	var b strings.Builder
	for i := range 3000 {
		b.WriteString(slapdtest.ADUser(fmt.Sprintf("u%d", i), fmt.Sprintf("U%d", i), 512, fmt.Sprintf("u%d@example.com", i)))
	}
	s := slapdtest.Start(t, slapdtest.Options{LDIF: b.String()})
	pid := slapdPID(t, s)
	defer syscall.Kill(pid, syscall.SIGCONT)
	c := config(s)
	c.Timeout = time.Second
	for _, delay := range []time.Duration{0, 30 * time.Millisecond} {
		timer := time.AfterFunc(delay, func() { syscall.Kill(pid, syscall.SIGSTOP) })
		snap, err := loadWithin(t, c, 10*time.Second)
		timer.Stop()
		syscall.Kill(pid, syscall.SIGCONT)
		if err == nil {
			// The load may have finished before the stop; then it is whole.
			if len(snap.Users) != 3000 {
				t.Fatalf("stopped after %v: success with %d users", delay, len(snap.Users))
			}
			t.Logf("stopped after %v: the load finished first", delay)
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("stopped after %v: %v, want a deadline", delay, err)
		}
	}
	c.Timeout = 20 * time.Second
	if snap := mustLoad(t, c); len(snap.Users) != 3000 {
		t.Fatalf("after SIGCONT: %d users", len(snap.Users))
	}
}
