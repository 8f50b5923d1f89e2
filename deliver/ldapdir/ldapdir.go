// Package ldapdir reads the users of a multidrop domain and their
// addresses from an LDAP or Active Directory server: one bind and one
// paged, bounded search per load, over verified TLS. It only reads; when
// to load again, and what to do while the server cannot be reached, is the
// caller's (package fetch) decision.
package ldapdir

import (
	"context"
	"crypto/x509"
	"errors"
	"time"
)

// Config is what one load needs. The zero value of a field means the
// default its comment names.
type Config struct {
	URL      string         // ldaps://host[:port], or ldap://host[:port] with StartTLS (required)
	RootCAs  *x509.CertPool // nil = the system roots
	BindDN   string         // "" = anonymous bind
	Password string         // the bind password (already resolved)
	BaseDN   string
	Filter   string // default DefaultFilter
	// UserAttribute holds the user name; the value is lower-cased.
	// Default "sAMAccountName".
	UserAttribute     string
	AddressAttributes []string // default "mail", "proxyAddresses"
	Groups            bool
	GroupFilter       string        // default "(objectClass=group)"
	MemberAttribute   string        // default "member"
	Timeout           time.Duration // the whole load; default 30s
	MaxEntries        int           // default 100000
}

// DefaultFilter selects the enabled users of Active Directory (bit 2 of
// userAccountControl is ACCOUNTDISABLE; 1.2.840.113556.1.4.803 is the
// bitwise-AND matching rule, which OpenLDAP implements too).
const DefaultFilter = "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"

// Snapshot is one load's result.
type Snapshot struct {
	// Users maps a user name (lower-cased) to its addresses, as the
	// directory spells them (full addresses; proxyAddresses without the
	// smtp: prefix).
	Users map[string][]string
	// Groups maps a group's address to the user names of its members
	// (only with Config.Groups).
	Groups  map[string][]string
	Entries int      // entries read, users and groups
	Skipped []string // entries or values ignored, and why (bounded)
	Loaded  time.Time
}

// ErrNotBuilt is returned until the LDAP client lands.
var ErrNotBuilt = errors.New("ldap directory: not built yet")

// Load binds and reads the directory once.
func Load(ctx context.Context, c Config) (*Snapshot, error) {
	return nil, ErrNotBuilt
}
