//go:build !unix

package durable

import "os"

// SyncDirFile fsyncs the directory dir is open on; without openat(2) it
// is opened again by its path.
func SyncDirFile(dir *os.File) error {
	return SyncDir(dir.Name())
}
