package uidl

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// maxName keeps journal names, plus the ".lock", ".tmp", ".len",
// ".len.tmp" and ".careful" suffixes, under the common 255-byte file-name
// limit.
const maxName = 240

// journalSuffix ends every journal name. Its siblings end in ".lock",
// ".tmp" or ".len" (".len.tmp"), and the journals of older versions in
// ":PORT" (a digit) or, shortened, in a hex digit; so no mailbox's journal
// can be named like another's lock, temporary file, length mark or old
// journal, and no sibling of one journal like a sibling of another (a
// sibling name minus its suffix ends in ".uidl" or a digit, never in
// ".len").
const journalSuffix = ".uidl"

// Path returns the journal path of a mailbox under stateDir:
// stateDir/uidl/MAILBOX.uidl, where mailbox is rcfile.Account.Mailbox
// (USERNAME@SERVER, the server lower-cased, whatever the port; or the
// account's mailbox_id). One rule names a mailbox for the config check and
// for the journal, so switching an account between STLS on 110 and
// implicit TLS on 995 keeps its journal.
//
// The name is readable (admins grep it) and safe for any input: '%', '/',
// bytes outside 0x21–0x7E and a leading '.' or '-' are percent-escaped, so
// the name never leaves the directory, is never hidden, and decodes back
// uniquely (an empty mailbox is "%"). A name that would exceed file-name
// limits keeps a readable prefix and ends in "%~" plus the SHA-256 of the
// full name, which no unshortened name contains.
func Path(stateDir, mailbox string) string {
	return filepath.Join(stateDir, "uidl", FileName(mailbox, journalSuffix))
}

// FileName is the file name Path gives mailbox's journal, with suffix in
// place of ".uidl": escaped and shortened by the same rule, at most 240
// bytes with the suffix. Other per-mailbox files in the state directory
// (the learned routes of a multidrop mailbox, fetch.LearnedPath) are named
// by it, so one mailbox's files share one readable, collision-free name.
func FileName(mailbox, suffix string) string {
	b := make([]byte, 0, len(mailbox)+8)
	if mailbox == "" {
		// Never hidden; a lone '%' is no escape, so no other mailbox
		// has this name.
		b = append(b, '%')
	}
	for i := 0; i < len(mailbox); i++ {
		c := mailbox[i]
		b = escapeByte(b, c, i == 0 && (c == '.' || c == '-'))
	}
	return string(shorten(b, maxName-len(suffix))) + suffix
}

// LegacyPath is the journal path versions before Path's rule used:
// stateDir/uidl/USER@SERVER:PORT, one per port. OpenMigrating moves such
// a journal to Path's name.
func LegacyPath(stateDir, user, server string, port int) string {
	return filepath.Join(stateDir, "uidl", fileName(user, server, port))
}

// LegacyPaths returns the journals older versions kept for user at server
// under stateDir: the one of port, or with anyPort those of every port
// (names shortened for length are not found). A journal counts if it
// exists or if its length mark does: a mark without its journal records
// that the journal was deleted, which OpenMigrating carries over to the
// new name so that Open refuses it, as it would have under the old one.
func LegacyPaths(stateDir, user, server string, port int, anyPort bool) ([]string, error) {
	dir := filepath.Join(stateDir, "uidl")
	if !anyPort {
		p := LegacyPath(stateDir, user, server, port)
		for _, name := range []string{p, p + markSuffix} {
			if _, err := os.Lstat(name); err == nil {
				return []string{p}, nil
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(fileName(user, server, 0), "0")
	var out []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		rest = strings.TrimSuffix(rest, markSuffix)
		if len(rest) < 1 || len(rest) > 5 || strings.Trim(rest, "0123456789") != "" {
			continue
		}
		if p := filepath.Join(dir, prefix+rest); !slices.Contains(out, p) {
			out = append(out, p) // ReadDir sorts: a journal and its mark are neighbours
		}
	}
	return out, nil
}

// fileName builds "USER@SERVER:PORT" with the escaping described at
// LegacyPath.
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
	return string(shorten(b, maxName))
}

// shorten returns an escaped name b cut to at most max bytes: if longer,
// a prefix, "%~" and the SHA-256 of b in hex. "%~" never occurs in an
// escaped name ('%' is always followed by two hex digits), so shortened
// names cannot collide with unshortened ones.
func shorten(b []byte, max int) []byte {
	if len(b) <= max {
		return b
	}
	sum := sha256.Sum256(b)
	cut := max - 2 - 2*len(sum)
	for cut > 0 && b[cut-1] == '%' || cut > 1 && b[cut-2] == '%' {
		cut-- // do not split an escape
	}
	return append(append(b[:cut:cut], "%~"...), hex.EncodeToString(sum[:])...)
}

func escapeByte(b []byte, c byte, force bool) []byte {
	if force || c < 0x21 || c > 0x7E || c == '%' || c == '/' {
		const hexdig = "0123456789ABCDEF"
		return append(b, '%', hexdig[c>>4], hexdig[c&15])
	}
	return append(b, c)
}
