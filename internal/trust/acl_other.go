//go:build !linux

package trust

// aclWriters knows only Linux's ACL storage; elsewhere the mode bits
// alone decide.
func (userDB) aclWriters(path, attr string, uid, gid uint32) string { return "" }
