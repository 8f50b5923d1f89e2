package uidl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/popfetch/popfetch/internal/trust"
)

// Check reports, creating and writing nothing, why Open(path) would fail
// on the file system: a directory on the way that is not one, a state
// directory the user popfetch runs as cannot create or write (access is
// access(2) for that user; nil = trust.EffectiveAccess), a journal
// directory writable by group or others, or a journal that is not a
// private regular file it can read and write. It does not replay the
// journal: that needs its lock.
func Check(path string, access func(string, uint32) error) error {
	if access == nil {
		access = trust.EffectiveAccess
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err == nil:
		if !fi.IsDir() {
			return fmt.Errorf("uidl: %s is not a directory", dir)
		}
		if err := checkPrivate(dir, 0o022); err != nil {
			return err
		}
		if err := access(dir, trust.W|trust.X); err != nil {
			return fmt.Errorf("uidl: state directory %s is not writable: %w", dir, err)
		}
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		// Open creates it and its missing parents: the nearest existing
		// one must be a directory it can write.
		for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
			pfi, err := os.Stat(p)
			if err == nil {
				if !pfi.IsDir() {
					return fmt.Errorf("uidl: state directory %s cannot be created: %s is not a directory", dir, p)
				}
				if err := access(p, trust.W|trust.X); err != nil {
					return fmt.Errorf("uidl: state directory %s cannot be created: %s is not writable: %w", dir, p, err)
				}
				return nil
			}
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
				return fmt.Errorf("uidl: stat %s: %w", p, err)
			}
			if p == filepath.Dir(p) {
				return nil
			}
		}
	default:
		return fmt.Errorf("uidl: stat %s: %w", dir, err)
	}
	jfi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("uidl: stat %s: %w", path, err)
	case !jfi.Mode().IsRegular():
		return fmt.Errorf("uidl: %s is not a regular file", path)
	case jfi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%w: %s is %v (hint: chmod 600 %s)", ErrInsecure, path, jfi.Mode().Perm(), path)
	}
	if err := access(path, trust.R|trust.W); err != nil {
		return fmt.Errorf("uidl: journal %s is not readable and writable: %w", path, err)
	}
	return nil
}
