package sockpeek

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

func TestReadable(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("Readable looks at the socket on Unix systems only; CI runs Linux")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if Readable(c) {
		t.Fatal("Readable before the peer wrote anything")
	}
	if _, err := io.WriteString(s, "+OK stray\r\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !Readable(c) {
		if time.Now().After(deadline) {
			t.Fatal("Readable never saw the peer's bytes")
		}
		time.Sleep(time.Millisecond)
	}
	// A peek reads nothing: the bytes are all still there.
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.ReadAtLeast(c, buf, len("+OK stray\r\n"))
	if err != nil || string(buf[:n]) != "+OK stray\r\n" {
		t.Fatalf("read after Readable = %q, %v", buf[:n], err)
	}
	if Readable(c) {
		t.Fatal("Readable after everything was read")
	}
	// The peer closing is not data.
	s.Close()
	time.Sleep(20 * time.Millisecond)
	if Readable(c) {
		t.Fatal("Readable after the peer closed (EOF is not data)")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Readable(a) {
		t.Fatal("Readable on a net.Pipe (no socket)")
	}
}
