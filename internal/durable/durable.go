package durable

import (
	"io/fs"
	"os"
)

// SyncDir fsyncs the directory at path. Errors are *fs.PathError naming
// path, with Op "open" or "fsync".
func SyncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return fsync(d, path)
}

func fsync(d *os.File, path string) error {
	if err := d.Sync(); err != nil {
		// os reports "sync"; "fsync" says which call failed.
		if pe, ok := err.(*fs.PathError); ok {
			err = pe.Err
		}
		return &fs.PathError{Op: "fsync", Path: path, Err: err}
	}
	return nil
}
