package deliver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/popfetch/popfetch/internal/trust"
)

// Access answers access(2) for the user popfetch runs as (see
// trust.EffectiveAccess, the default); tests inject another.
type Access func(path string, mode uint32) error

// Problem is one reason a delivery target would fail or may fail, found
// without delivering: Warning is set when it may still work.
type Problem struct {
	Warning bool
	Err     error
}

// CheckMaildir reports, creating and writing nothing, why delivery into
// the Maildir at path would fail: the path (or a directory on its way)
// exists but is not a directory; tmp/, new/ or cur/ is not a directory or
// is a symlink (open refuses both); what delivery would create or write is
// in a directory the user popfetch runs as cannot write. For a template
// with {user} or {domain} only the fixed prefix before the first
// placeholder is checked: each user's own directory can exist with other
// rights, so a prefix that cannot be written is a warning (new users'
// Maildirs could not be created). A Maildir that does not exist yet is no
// problem: delivery creates it.
func CheckMaildir(path string, access Access) []Problem {
	if access == nil {
		access = trust.EffectiveAccess
	}
	dir, template := path, hasPlaceholder(path, "")
	if template {
		comps := pathComponents(path)
		for i, c := range comps {
			if hasPlaceholder(c, "") {
				dir = string(filepath.Separator) + filepath.Join(comps[:i]...)
				break
			}
		}
	}
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return []Problem{{Err: fmt.Errorf("maildir %s is not a directory (%s)", dir, fileKind(fi))}}
	case err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotDir(err):
		return []Problem{{Err: fmt.Errorf("maildir %s: %w", dir, err)}}
	case err != nil:
		return missingDir(dir, access)
	}
	if template {
		if err := access(dir, trust.W|trust.X); err != nil {
			return []Problem{{Warning: true, Err: fmt.Errorf("maildir %s: popfetch cannot create a new user's Maildir here: %w", dir, err)}}
		}
		return nil
	}
	return checkSubdirs(dir, access)
}

// CheckFolder reports, creating and writing nothing, why delivery into
// the Maildir++ folder (see MaildirOptions.Folder) of the Maildir at path
// would fail, besides what CheckMaildir reports: the folder's name must
// be valid,
// its directory must not be a symlink or anything but a directory, its
// tmp/, new/ and cur/ get the checks of the inbox's, and what delivery
// would create (the folder, its subdirectories, its maildirfolder
// marker) must be in a directory the user popfetch runs as can write.
// For a template only the name is checked, as CheckMaildir checks only
// the prefix.
func CheckFolder(path, folder string, access Access) []Problem {
	if access == nil {
		access = trust.EffectiveAccess
	}
	var out []Problem
	if err := ValidFolder(folder); err != nil {
		return append(out, Problem{Err: fmt.Errorf("maildir folder %q: %w", folder, err)})
	}
	if hasPlaceholder(path, "") {
		return out
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		return out // missing (created with the folder) or reported
	}
	dir := filepath.Join(path, folderDir(folder))
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := access(path, trust.W|trust.X); err != nil {
			out = append(out, Problem{Err: fmt.Errorf("maildir %s is not writable, and its folder %s must be created in it: %w", path, folderDir(folder), err)})
		}
		return out
	case err != nil:
		return append(out, Problem{Err: fmt.Errorf("maildir folder %s: %w", dir, err)})
	case fi.Mode()&fs.ModeSymlink != 0:
		return append(out, Problem{Err: fmt.Errorf("maildir folder %s is a symlink; delivery follows none there (make it a directory)", dir)})
	case !fi.IsDir():
		return append(out, Problem{Err: fmt.Errorf("maildir folder %s is not a directory (%s)", dir, fileKind(fi))})
	}
	out = append(out, checkSubdirs(dir, access)...)
	if _, err := os.Lstat(filepath.Join(dir, folderMarker)); errors.Is(err, fs.ErrNotExist) {
		if err := access(dir, trust.W|trust.X); err != nil {
			out = append(out, Problem{Err: fmt.Errorf("maildir folder %s is not writable, and its %s marker must be created in it: %w", dir, folderMarker, err)})
		}
	}
	return out
}

// checkSubdirs checks tmp/, new/ and cur/ of the existing Maildir (or
// folder) dir for CheckMaildir.
func checkSubdirs(dir string, access Access) []Problem {
	var out []Problem
	create := false
	for _, sub := range []string{"tmp", "new", "cur"} {
		p := filepath.Join(dir, sub)
		sfi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			create = true
		case err != nil:
			out = append(out, Problem{Err: fmt.Errorf("maildir %s: %w", p, err)})
		case sfi.Mode()&fs.ModeSymlink != 0:
			out = append(out, Problem{Err: fmt.Errorf("maildir %s is a symlink; delivery follows none there (make it a directory)", p)})
		case !sfi.IsDir():
			out = append(out, Problem{Err: fmt.Errorf("maildir %s is not a directory (%s)", p, fileKind(sfi))})
		case sub != "cur":
			if err := access(p, trust.W|trust.X); err != nil {
				out = append(out, Problem{Err: fmt.Errorf("maildir %s is not writable: %w", p, err)})
			}
		}
	}
	if create {
		if err := access(dir, trust.W|trust.X); err != nil {
			out = append(out, Problem{Err: fmt.Errorf("maildir %s is not writable, and tmp/, new/ or cur/ must be created in it: %w", dir, err)})
		}
	}
	return out
}

// missingDir checks a directory delivery would create: the nearest
// existing directory above it must be a directory the user can write.
func missingDir(dir string, access Access) []Problem {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return []Problem{{Err: fmt.Errorf("maildir %s cannot be created: %s is not a directory (%s)", dir, p, fileKind(fi))}}
			}
			if err := access(p, trust.W|trust.X); err != nil {
				return []Problem{{Err: fmt.Errorf("maildir %s cannot be created: %s is not writable: %w", dir, p, err)}}
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !isNotDir(err) {
			return []Problem{{Err: fmt.Errorf("maildir %s: %w", p, err)}}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// CheckMDA reports, running nothing, why the MDA argv would fail: its
// program is missing, not a regular file, or not executable by the user
// popfetch runs as, or it fails the trust rules the run applies
// (trust.CheckPath: a program another user can change).
func CheckMDA(argv []string, access Access) []Problem {
	if access == nil {
		access = trust.EffectiveAccess
	}
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) || strings.ContainsRune(argv[0], '{') {
		return nil // the rc file refuses these
	}
	prog := argv[0]
	fi, err := os.Stat(prog)
	switch {
	case errors.Is(err, fs.ErrNotExist) || isNotDir(err):
		return []Problem{{Err: fmt.Errorf("mda program %s does not exist", prog)}}
	case err != nil:
		return []Problem{{Err: fmt.Errorf("mda program %s: %w", prog, err)}}
	case !fi.Mode().IsRegular():
		return []Problem{{Err: fmt.Errorf("mda program %s is not a regular file (%s)", prog, fileKind(fi))}}
	}
	var out []Problem
	if err := access(prog, trust.X); err != nil {
		out = append(out, Problem{Err: fmt.Errorf("mda program %s is not executable: %w", prog, err)})
	}
	if err := trust.CheckPath(prog); err != nil {
		out = append(out, Problem{Err: fmt.Errorf("mda program refused: %w", err)})
	}
	return out
}

// isNotDir: a component on the way is a file (ENOTDIR).
func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// fileKind names what a non-directory is, for messages.
func fileKind(fi fs.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t == 0:
		return "a regular file"
	case t&fs.ModeDir != 0:
		return "a directory"
	default:
		return t.String()
	}
}
