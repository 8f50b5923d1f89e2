package trust

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/popfetch/popfetch/internal/testutil"
)

// setACL stores a POSIX ACL in attr of path: entries of tag, perm, id.
func setACL(t *testing.T, path, attr string, entries ...[3]uint32) {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	if err := unix.Setxattr(path, attr, b, 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("no POSIX ACLs here: %v", err)
		}
		t.Fatal(err)
	}
}

// TestACL: a POSIX ACL that lets another user or group write a file or
// a directory on its way is refused, though the mode's group bits (the
// ACL's mask) look like a private group's.
func TestACL(t *testing.T) {
	t.Parallel()
	testutil.NeedRoot(t) // root's group 0 is private on this machine's /etc files
	if err := CheckTrustedPath(t, testutil.WriteFile(t, testutil.PrivateDir(t), "f", "x\n", 0o660)); err != nil {
		t.Skipf("root's group is not private here (%v)", err)
	}
	const rw, r, any = 6, 4, 0xffffffff
	entries := func(userPerm, mask uint32) [][3]uint32 {
		return [][3]uint32{{aclUserObj, rw, any}, {aclUser, userPerm, testutil.Nobody}, {aclGroupObj, r, any}, {aclMask, mask, any}, {aclOther, 0, any}}
	}
	for _, tt := range []struct {
		name  string
		onDir bool
		attr  string
		acl   [][3]uint32
		want  string // "" = trusted
	}{
		{"file, user nobody rw", false, "system.posix_acl_access", entries(rw, rw), "has an ACL that lets nobody write it"},
		{"file, user nobody r", false, "system.posix_acl_access", entries(r, r), ""},
		{"file, user nobody rw masked to r", false, "system.posix_acl_access", entries(rw, r), ""},
		{"file, group nogroup rw", false, "system.posix_acl_access",
			[][3]uint32{{aclUserObj, rw, any}, {aclGroupObj, r, any}, {aclGroup, rw, testutil.Nobody}, {aclMask, rw, any}, {aclOther, 0, any}},
			"has an ACL that lets the group nogroup write it"},
		{"directory, user nobody rwx", true, "system.posix_acl_access", entries(7, 7), "which has an ACL that lets nobody write it"},
		{"directory, default user nobody rw", true, "system.posix_acl_default", entries(rw, rw), "which has an ACL that lets nobody write it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.PrivateDir(t)
			sub := filepath.Join(dir, "sub")
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			p := testutil.WriteFile(t, sub, "f", "x\n", 0o600)
			on := p
			if tt.onDir {
				on = sub
			}
			setACL(t, on, tt.attr, tt.acl...)
			err := CheckTrustedPath(t, p)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckTrusted = %v; want nil", err)
			case tt.want != "" && (!errors.Is(err, ErrUntrustedFile) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("CheckTrusted = %v; want ErrUntrustedFile containing %q", err, tt.want)
			}
		})
	}
}
