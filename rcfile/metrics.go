package rcfile

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// CheckMetricsListen validates a metrics_listen value: an absolute path
// (a unix socket) or host:port / IP:port (TCP) with a numeric port. A
// relative path or a bare host would depend on the daemon's working
// directory or pick a port by surprise, so both are refused.
func CheckMetricsListen(s string) error {
	if s == "" {
		return errors.New(`metrics_listen must not be empty; leave it out to serve no metrics`)
	}
	if strings.HasPrefix(s, "/") {
		if filepath.Clean(s) != s || s == "/" {
			return fmt.Errorf("metrics_listen %q: a unix socket path must be clean and name a file", s)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("metrics_listen %q: want host:port, IP:port ([::1]:9469) or an absolute socket path: %w", s, err)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("metrics_listen %q: invalid host %q", s, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("metrics_listen %q: the port must be a number from 0 to 65535", s)
	}
	return nil
}
