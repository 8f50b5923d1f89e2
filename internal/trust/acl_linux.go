package trust

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// POSIX ACL entries as Linux stores them in the system.posix_acl_access
// and system.posix_acl_default extended attributes (acl(5); the format
// of linux/posix_acl_xattr.h): a 4-byte version 2, then 8-byte entries
// of tag, permission bits and id, little-endian.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclWrite    = 0x02
)

// aclWriters says whom the ACL attr of the file at path lets write it
// beyond its owner, root and the user popfetch runs as, the owner's
// private group included ("" if nobody, or if there is no such ACL). The
// mode's group bits hide this: with an ACL they show its mask, so a file
// of a private group with an entry user:eve:rw looks like mode 0660.
func (db userDB) aclWriters(path, attr string, uid, gid uint32) string {
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(path, attr, buf)
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return ""
	case err != nil:
		return fmt.Sprintf("has an ACL (%s) popfetch cannot read: %v", attr, err)
	}
	b := buf[:n]
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != 2 {
		return fmt.Sprintf("has an ACL (%s) popfetch cannot read", attr)
	}
	type entry struct {
		tag, perm uint16
		id        uint32
	}
	var entries []entry
	mask := uint16(0xffff) // no mask entry: nothing is masked
	for e := b[4:]; len(e) >= 8; e = e[8:] {
		en := entry{binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])}
		if en.tag == aclMask {
			mask = en.perm
		}
		entries = append(entries, en)
	}
	me := uint32(os.Geteuid())
	for _, en := range entries {
		w := en.perm&aclWrite != 0
		switch en.tag {
		case aclUser:
			if w && mask&aclWrite != 0 && en.id != 0 && en.id != me && en.id != uid {
				return fmt.Sprintf("has an ACL that lets %s write it (see getfacl)", userName(en.id))
			}
		case aclGroupObj, aclGroup:
			id := en.id
			if en.tag == aclGroupObj {
				id = gid
			}
			if w && mask&aclWrite != 0 && !db.privateGroup(id, uid) {
				return fmt.Sprintf("has an ACL that lets the group %s write it (see getfacl)", groupName(id))
			}
		case aclOther:
			if w {
				return "has an ACL that lets every user write it (see getfacl)"
			}
		case aclUserObj, aclMask:
		default:
			return fmt.Sprintf("has an ACL (%s) popfetch cannot read", attr)
		}
	}
	return ""
}
