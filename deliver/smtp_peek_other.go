//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package deliver

import "net"

// socketReadable cannot look at the socket on this platform: a stray reply
// is then found only once go-smtp has read it (see tapConn.inStep).
func socketReadable(net.Conn) bool { return false }
