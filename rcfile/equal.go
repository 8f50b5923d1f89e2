package rcfile

import (
	"reflect"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

var rangeType = reflect.TypeFor[hcl.Range]()

// same reports whether x and y hold the same settings, compared deeply:
//   - hcl.Range, at any depth, is where something is declared, not what
//     it says, and is skipped; a position field added to these types
//     later is skipped too;
//   - unexported fields count like exported ones, as in
//     reflect.DeepEqual: a field nobody has thought about must count as
//     a change (which costs a re-plan), never as sameness (a missed
//     change);
//   - pointers are followed (two nil pointers are the same, a nil and a
//     non-nil one are not); nil and empty slices or maps differ; funcs
//     and channels are the same only when both are nil; a NaN differs
//     from itself. The rc file never produces those, and a difference
//     where there is none only costs a re-plan.
//
// It is hand-written rather than a generic deep-comparison library's
// because it is all the daemon needs, and such a library's code would
// be linked into (and paged in by) every popfetch run.
func same(x, y any) bool {
	vx, vy := reflect.ValueOf(x), reflect.ValueOf(y)
	if !vx.IsValid() || !vy.IsValid() {
		return vx.IsValid() == vy.IsValid()
	}
	return vx.Type() == vy.Type() && sameValue(vx, vy, 0)
}

// maxDepth bounds sameValue on a cycle of pointers (the rc file makes
// none): deeper than any settings tree, so reaching it means a cycle,
// counted as a change.
const maxDepth = 64

// sameValue compares x and y, of one type, as same describes. It reads
// unexported fields through the kind's accessors (Int, String, ...),
// which reflect allows; it never calls Interface on them.
func sameValue(x, y reflect.Value, depth int) bool {
	if depth > maxDepth {
		return false
	}
	if x.Type() == rangeType {
		return true
	}
	switch x.Kind() {
	case reflect.Bool:
		return x.Bool() == y.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return x.Int() == y.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return x.Uint() == y.Uint()
	case reflect.Float32, reflect.Float64:
		return x.Float() == y.Float()
	case reflect.Complex64, reflect.Complex128:
		return x.Complex() == y.Complex()
	case reflect.String:
		return x.String() == y.String()
	case reflect.Pointer:
		if x.IsNil() || y.IsNil() {
			return x.IsNil() && y.IsNil()
		}
		return sameValue(x.Elem(), y.Elem(), depth+1)
	case reflect.Interface:
		if x.IsNil() || y.IsNil() {
			return x.IsNil() && y.IsNil()
		}
		ex, ey := x.Elem(), y.Elem()
		return ex.Type() == ey.Type() && sameValue(ex, ey, depth+1)
	case reflect.Struct:
		for i := range x.NumField() {
			if !sameValue(x.Field(i), y.Field(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if x.IsNil() != y.IsNil() {
			return false
		}
		fallthrough
	case reflect.Array:
		if x.Len() != y.Len() {
			return false
		}
		for i := range x.Len() {
			if !sameValue(x.Index(i), y.Index(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Map:
		if x.IsNil() != y.IsNil() || x.Len() != y.Len() {
			return false
		}
		for _, k := range x.MapKeys() {
			vy := y.MapIndex(k)
			if !vy.IsValid() || !sameValue(x.MapIndex(k), vy, depth+1) {
				return false
			}
		}
		return true
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return x.IsNil() && y.IsNil()
	}
	return false // an invalid Value: no setting is one
}

// SameAccount reports whether x and y configure the same account,
// ignoring where anything is declared in the file: adding a comment line
// above a block, or moving it, does not change an account, while editing
// any setting, also deep inside nested blocks, does. The daemon relies on
// it on reload: a changed account has its auth-hold lifted and its
// backoff reset, so counting a moved block as a change would retry every
// failing account at once.
func SameAccount(x, y *Account) bool {
	return same(x, y)
}

// SameSignIn reports whether x and y sign in to the same OAuth2 grant:
// the same oauth2 block (positions ignored, as in SameAccount), the same
// oauth2_token_command and the same state_dir (where the tokens live).
// Package fetch keeps one token source per account while this holds.
func SameSignIn(x, y *Account) bool {
	return same(x.OAuth2, y.OAuth2) &&
		slices.Equal(x.OAuth2TokenCommand, y.OAuth2TokenCommand) &&
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
	return same(l, o)
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
	return same(&x, &y)
}

func accountLDAP(a *Account) *LDAP {
	if a == nil || a.Multidrop == nil {
		return nil
	}
	return a.Multidrop.LDAP
}
