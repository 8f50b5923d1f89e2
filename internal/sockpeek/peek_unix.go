//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sockpeek

import (
	"net"
	"syscall"
)

// Readable reports whether c's socket holds bytes not yet read,
// without reading them or waiting (recv with MSG_PEEK|MSG_DONTWAIT). A
// connection without a file descriptor (net.Pipe in tests) never does.
func Readable(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = err == nil && n > 0
		return true // done either way: never wait
	})
	return err == nil && ready
}
