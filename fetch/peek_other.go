//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package fetch

import "net"

// socketReadable cannot look at the socket on this platform: surplus data
// is then found only once it is in go-pop3's read buffer (see conn.idle).
func socketReadable(net.Conn) bool { return false }
