//go:build !linux

package durable

import "errors"

var errNoSyncfs = errors.New("durable: syncfs is only used on Linux")

// SharedSyncKey says no outside Linux: there each file is fsynced.
func SharedSyncKey(int) (uint64, bool) { return 0, false }

// Syncfs and CheckWriteback are never reached outside Linux
// (SharedSyncKey says no); they fail rather than pass for a sync.
func Syncfs(int) error         { return errNoSyncfs }
func CheckWriteback(int) error { return errNoSyncfs }

// SyncFilesystem is never reached outside Linux either.
func SyncFilesystem(int, string, int, string) error { return errNoSyncfs }
