package uidl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// carefulSuffix names the mark beside a mailbox's journal saying that its
// last poll broke off in a round of RETRs, so the next poll is to fetch
// one message per round (fetch's Poller keeps the same fact in memory). A
// daemon remembers it across polls anyway; the mark is for one-shot runs,
// each a new process: without it, a round whose spool does not fit on the
// state disk breaks every run at the same RETR. Like ".lock", ".tmp" and
// ".len" it ends in a non-digit, so no journal is named like it.
const carefulSuffix = ".careful"

// SetCareful sets (on) or clears the careful mark of the journal at path.
// The mark is advisory and not fsynced: lost in a crash, it costs one
// more broken poll, never a message. Creating it needs no free block, so
// it is made on a full state disk too.
func SetCareful(path string, on bool) error {
	name := path + carefulSuffix
	if !on {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Set already, or something else has the name (a directory, a
		// FIFO, a symlink), which Careful does not take for the mark:
		// say so rather than report a mark that is not there.
		if fi, err := os.Lstat(name); err != nil {
			return err
		} else if !fi.Mode().IsRegular() {
			return fmt.Errorf("uidl: careful mark %s: not a regular file (%v)", name, fi.Mode().Type())
		}
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// Careful reports whether the journal at path has its careful mark (see
// SetCareful). Anything but a regular file is no mark.
func Careful(path string) bool {
	fi, err := os.Lstat(path + carefulSuffix)
	return err == nil && fi.Mode().IsRegular()
}
