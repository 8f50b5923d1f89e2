// Package durable makes directory entries survive a crash: it is the one
// place popfetch fsyncs a directory. Creating, linking, renaming or
// removing a file changes its directory, and until the directory itself is
// fsynced a crash may undo that change even though the file's own data is
// on disk (fsync(2): "Calling fsync() does not necessarily ensure that the
// entry in the directory containing the file has also reached disk. For
// that an explicit fsync() on a file descriptor for the directory is also
// needed."). The UIDL journal (package uidl), the Maildir target (package
// deliver) and crash recovery (package fetch, through deliver) use it.
// GroupSync lets concurrent callers share a directory's fsync (group
// commit) without any of them counting on an fsync that began before its
// own change.
package durable
