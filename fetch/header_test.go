package fetch

import (
	"bufio"
	"bytes"
	"net/textproto"
)

// headerValue returns the first field called name in the header of a
// delivered test message.
func headerValue(raw []byte, name string) string {
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
	return h.Get(name)
}
