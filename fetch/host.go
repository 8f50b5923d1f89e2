package fetch

import "os"

// localHost is this host's name for the trace headers (see wire.go).
func localHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}
