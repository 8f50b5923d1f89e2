package uidl

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// maxName keeps journal names, plus the ".lock" and ".tmp" suffixes, under
// the common 255-byte file-name limit.
const maxName = 240

// fileName builds "USER@SERVER:PORT" with the escaping described at Path.
//
// Why it is injective: escaping is reversible ('%' itself is escaped); the
// escaped server holds no '@', so the last '@' ends the user; the port is a
// decimal integer, so the last ':' starts it. The ".lock"/".tmp" siblings end
// in a non-digit, so they never equal another mailbox's journal name.
func fileName(user, server string, port int) string {
	b := make([]byte, 0, len(user)+len(server)+16)
	for i := 0; i < len(user); i++ {
		c := user[i]
		// A leading '.' would hide the file; a leading '-' reads as an option
		// to the admin's tools.
		b = escapeByte(b, c, i == 0 && (c == '.' || c == '-'))
	}
	b = append(b, '@')
	for i := 0; i < len(server); i++ {
		c := server[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A' // RFC 4343: DNS names are case-insensitive
		}
		b = escapeByte(b, c, c == '@')
	}
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(port), 10)
	if len(b) <= maxName {
		return string(b)
	}
	// "%~" never occurs in an escaped name ('%' is always followed by two
	// hex digits), so shortened names cannot collide with unshortened ones.
	sum := sha256.Sum256(b)
	cut := maxName - 2 - 2*len(sum)
	for cut > 0 && b[cut-1] == '%' || cut > 1 && b[cut-2] == '%' {
		cut-- // do not split an escape
	}
	return string(b[:cut]) + "%~" + hex.EncodeToString(sum[:])
}

func escapeByte(b []byte, c byte, force bool) []byte {
	if force || c < 0x21 || c > 0x7E || c == '%' || c == '/' {
		const hexdig = "0123456789ABCDEF"
		return append(b, '%', hexdig[c>>4], hexdig[c&15])
	}
	return append(b, c)
}
