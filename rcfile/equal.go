package rcfile

import (
	"reflect"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
)

// sameAccountOpts make every setting count and no position:
//   - hcl.Range, at any depth, is where something is declared, not what
//     it says; a position field added to these types later is ignored
//     too;
//   - unexported fields are compared like exported ones, as
//     reflect.DeepEqual does: without an Exporter cmp.Equal panics on
//     them, and a field nobody has thought about must count as a change
//     (which costs a re-plan), never as sameness (a missed change).
//
// Nil and empty slices differ, and funcs or channels are equal only when
// both are nil: the rc file never produces those, and a difference where
// there is none only costs a re-plan.
var sameAccountOpts = []cmp.Option{
	cmpopts.IgnoreTypes(hcl.Range{}),
	cmp.Exporter(func(reflect.Type) bool { return true }),
}

// SameAccount reports whether x and y configure the same account,
// ignoring where anything is declared in the file: adding a comment line
// above a block, or moving it, does not change an account, while editing
// any setting, also deep inside nested blocks, does. The daemon relies on
// it on reload: a changed account has its auth-hold lifted and its
// backoff reset, so counting a moved block as a change would retry every
// failing account at once.
//
// It is a function, not an Equal method: cmp.Equal calls a type's Equal
// method, which would then call itself.
func SameAccount(x, y *Account) bool {
	return cmp.Equal(x, y, sameAccountOpts...)
}

// SameSignIn reports whether x and y sign in to the same OAuth2 grant:
// the same oauth2 block (positions ignored, as in SameAccount), the same
// oauth2_token_command and the same state_dir (where the tokens live).
// Package fetch keeps one token source per account while this holds.
func SameSignIn(x, y *Account) bool {
	return cmp.Equal(x.OAuth2, y.OAuth2, sameAccountOpts...) &&
		cmp.Equal(x.OAuth2TokenCommand, y.OAuth2TokenCommand, cmpopts.EquateEmpty()) &&
		x.StateDir == y.StateDir
}

// SameLDAP reports whether x and y read the same multidrop directory:
// the same ldap block (positions ignored, as in SameAccount), or neither
// has one. Package fetch keeps an account's directory cache, and its last
// good copy, while this holds, and loads afresh when it does not.
func SameLDAP(x, y *Account) bool {
	return accountLDAP(x).Same(accountLDAP(y))
}

// Same reports whether l and o load the same directory (positions
// ignored); two nil blocks are the same.
func (l *LDAP) Same(o *LDAP) bool {
	return cmp.Equal(l, o, sameAccountOpts...)
}

// SameContent reports whether l and o read the same directory content:
// they differ at most in when and how long it is read (refresh, grace,
// timeout) and in positions. Everything else (url, ca_file, bind_dn, the
// password source, base_dn, filter, attributes, the group settings,
// max_entries) can change which entries a load yields, or whom it trusts
// to yield them. Package fetch keeps an account's last good copy while
// this holds, so raising grace during an outage keeps the mail flowing.
// Two nil blocks have the same content.
func (l *LDAP) SameContent(o *LDAP) bool {
	if l == nil || o == nil {
		return l == o
	}
	x, y := *l, *o
	x.Refresh, x.Grace, x.Timeout = 0, 0, 0
	y.Refresh, y.Grace, y.Timeout = 0, 0, 0
	return cmp.Equal(&x, &y, sameAccountOpts...)
}

func accountLDAP(a *Account) *LDAP {
	if a == nil || a.Multidrop == nil {
		return nil
	}
	return a.Multidrop.LDAP
}
