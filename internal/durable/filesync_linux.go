//go:build linux

package durable

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// syncfsTrusted are the statfs(2) f_type values of the filesystems whose
// syncfs(2) popfetch relies on to make every file's data and inode
// durable (with the device flush SyncFilesystem adds). Their sync_fs
// either commits a journal or log with a cache flush (ext4 with a
// journal, xfs, btrfs, f2fs) or leaves only block-device buffers behind,
// which syncfs writes and waits for before it returns and the trailing
// flush makes stable (ext4 without a journal, ext2); tmpfs keeps nothing
// across a crash anyway. Network, FUSE, overlay and unknown filesystems
// may implement sync_fs partly or not at all: their files are fsynced
// one by one.
var syncfsTrusted = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:  true, // 0xEF53: ext2, ext3 and ext4 alike
	unix.XFS_SUPER_MAGIC:   true,
	unix.BTRFS_SUPER_MAGIC: true,
	unix.F2FS_SUPER_MAGIC:  true,
	unix.TMPFS_MAGIC:       true,
}

// SharedSyncKey reports whether the file open on fd is on a filesystem
// whose syncfs(2) may stand for its fsync(2) (see FileSync), and the
// filesystem's device number, the key for FileSync. Any error says no:
// the caller fsyncs the file, as it would without FileSync.
func SharedSyncKey(fd int) (dev uint64, ok bool) {
	var sfs unix.Statfs_t
	if err := retry(func() error { return unix.Fstatfs(fd, &sfs) }); err != nil || !syncfsTrusted[int64(sfs.Type)] {
		return 0, false
	}
	var st unix.Stat_t
	if err := retry(func() error { return unix.Fstat(fd, &st) }); err != nil {
		return 0, false
	}
	return uint64(st.Dev), true
}

// Syncfs is syncfs(2) on the filesystem of fd. Since Linux 5.8 it
// reports a writeback error of the filesystem since fd was opened (or
// last passed to syncfs); before, only some errors: the callers of a
// shared sync therefore check their own files (CheckWriteback).
func Syncfs(fd int) error {
	return retry(func() error { return unix.Syncfs(fd) })
}

// CheckWriteback writes and waits for any page of the file open on fd
// still dirty (none once a syncfs covered it) and reports a writeback
// error of the file since fd was opened: sync_file_range(2) with
// WAIT_BEFORE, WRITE and WAIT_AFTER waits through file_fdatawait_range,
// which returns file_check_and_advance_wb_err (the per-descriptor error
// sequence of Linux 4.13 and later), so an error of this file's data is
// seen here even when an earlier syncfs, through another descriptor,
// already reported and consumed the filesystem-wide one. It neither
// flushes the device nor writes the inode: it is a check, not a sync.
func CheckWriteback(fd int) error {
	const all = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	return retry(func() error { return unix.SyncFileRange(fd, 0, 0, all) })
}

// retry runs call until it fails with something other than EINTR.
func retry(call func() error) error {
	for {
		if err := call(); err != unix.EINTR {
			return err
		}
	}
}

// SyncFilesystem makes every file written on fd's filesystem before the
// call durable, data and inode, before it returns: syncfs(2) on fd (the
// file at name), then an fsync of the directory dirfd (at dirName; an
// O_PATH descriptor will do) on the same filesystem, which is there for
// its device cache flush. Errors are *fs.PathError, Op "syncfs" naming
// name, or as SyncDirFd's.
//
// fd should be a descriptor opened for the files being synced, not a
// long-lived one: since Linux 5.8 syncfs reports a writeback error of the
// filesystem since fd was opened or last passed to syncfs, and advances
// fd's mark, so a long-lived descriptor would hand an error to whichever
// round came first and hide it from the rest (the per-file check,
// CheckWriteback, still sees it; a fresh descriptor just reports more).
//
// Why the second step: syncfs (sync_filesystem in fs/sync.c) writes the
// files' data and waits for it, calls the filesystem's sync_fs, and only
// then writes and waits for the block device's buffers. ext4 without a
// journal keeps its inodes, block maps and bitmaps in those buffers
// (ext4_write_inode only marks them dirty on a sync), and its sync_fs
// flushes the device cache before they are written: after syncfs they
// have reached the device but may sit in its volatile cache, where a
// power loss takes a file's size or block map while its name, renamed
// into new/ afterwards, survives. ext2's sync_fs flushes nothing at all.
// fsync of any file there ends with a cache flush (blkdev_issue_flush
// under the default barrier option), which makes all of it stable. With
// a journal (ext4, ext3 through the ext4 driver), xfs, btrfs and f2fs,
// sync_fs commits the journal, log, transaction or checkpoint with a
// cache flush after the data, so syncfs alone suffices there and the
// directory fsync costs one more flush per shared sync, not per file.
func SyncFilesystem(fd int, name string, dirfd int, dirName string) error {
	if err := Syncfs(fd); err != nil {
		return &fs.PathError{Op: "syncfs", Path: name, Err: err}
	}
	return SyncDirFd(dirfd, dirName)
}
