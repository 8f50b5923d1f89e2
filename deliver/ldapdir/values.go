package ldapdir

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// UserName checks and lower-cases a user name read from the directory. The
// name becomes {user} in Maildir paths and MDA argv, so only
// [a-z0-9][a-z0-9._-]{0,63} without ".." is accepted. The check runs on
// the value as read, ASCII only, before lower-casing: Unicode case
// mapping turns some non-ASCII letters into ASCII ones (KELVIN SIGN U+212A
// lower-cases to "k"), which would let "\u212Aaren" pass as "karen".
func UserName(v string) (string, error) {
	if v == "" {
		return "", errors.New("is empty")
	}
	if len(v) > 64 {
		return "", fmt.Errorf("is %d bytes long (at most 64)", len(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return "", fmt.Errorf("%+q is not a safe user name (letters, digits, and . _ - after the first)", v)
		}
	}
	if strings.Contains(v, "..") {
		return "", fmt.Errorf("%+q contains \"..\"", v)
	}
	return strings.ToLower(v), nil
}

// Address checks one address value (mail, or any address attribute but
// proxyAddresses): exactly one "@" with something on both sides, valid
// UTF-8 of at most MaxValueLen bytes, no white space, control characters
// or the characters that delimit addresses or their types (<>,;:"\()),
// and no non-ASCII letter whose lower or upper case is ASCII.
func Address(v string) (string, error) {
	if len(v) > MaxValueLen {
		return "", fmt.Errorf("of %d bytes (at most %d)", len(v), MaxValueLen)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("%q is not UTF-8", v)
	}
	at := strings.IndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || strings.Count(v, "@") != 1 {
		return "", fmt.Errorf("%q is not an address (one @ with a local part and a domain)", v)
	}
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("<>,;:\"\\()", r) {
			return "", fmt.Errorf("%q: %q is not allowed in an address", v, r)
		}
		// Addresses are compared case-insensitively (strings.ToLower):
		// a non-ASCII letter whose case mapping is ASCII (KELVIN SIGN
		// U+212A lower-cases to "k", LATIN SMALL LETTER LONG S U+017F
		// upper-cases to "S", U+0130 to "i") would make the address
		// the same as another, all-ASCII one.
		if r >= utf8.RuneSelf && (unicode.ToLower(r) < utf8.RuneSelf || unicode.ToUpper(r) < utf8.RuneSelf) {
			return "", fmt.Errorf("%q: %+q folds to an ASCII letter", v, r)
		}
	}
	return v, nil
}

// ProxyAddress reads one proxyAddresses value of Active Directory
// ("TYPE:address"): "SMTP:" (the primary address) and "smtp:" (the
// others), in any case, give the address after the prefix (ok true); any
// other type (X500:, X400:, SIP:, EUM: ...) is not mail: ok false, no
// error. A value without a type, or an SMTP address that Address refuses,
// is an error.
func ProxyAddress(v string) (addr string, ok bool, err error) {
	if len(v) > MaxValueLen {
		return "", false, fmt.Errorf("of %d bytes (at most %d)", len(v), MaxValueLen)
	}
	colon := strings.IndexByte(v, ':')
	if colon <= 0 {
		return "", false, fmt.Errorf("%q has no address type (e.g. smtp:)", v)
	}
	if !strings.EqualFold(v[:colon], "smtp") {
		return "", false, nil
	}
	a, err := Address(v[colon+1:])
	if err != nil {
		return "", false, err
	}
	return a, true, nil
}
