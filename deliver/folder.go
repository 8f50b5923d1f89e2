package deliver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Maildir++ folders (the layout Courier defined and dovecot, Courier and
// maildrop read): a folder of a Maildir is the directory "." + name inside
// it, a Maildir of its own (tmp/, new/, cur/), with an empty file named
// maildirfolder that tells delivery agents it is a folder (Courier's
// maildirquota, for instance, then counts it against the parent's
// quota). Hierarchy is written with dots: the folder "Lists.dev" is
// .Lists.dev, a subfolder of Lists.

// MaxFolderLen bounds a folder name in bytes: with its leading dot it
// stays well within a file name's 255 bytes (NAME_MAX), whatever a mail
// reader appends.
const MaxFolderLen = 200

// folderMarker is the file that marks a Maildir++ folder.
const folderMarker = "maildirfolder"

// ErrBadFolder is wrapped by ValidFolder's errors.
var ErrBadFolder = errors.New("not a usable Maildir++ folder name")

// ValidFolder reports whether name may name a Maildir++ folder, written
// as the user sees it: "Junk", "Lists.dev" (a dot separates the levels;
// popfetch adds the leading dot of the directory name). Refused: an
// empty name or level (so no leading or trailing dot and no ".."), '/'
// (which would leave the Maildir), control characters, bytes outside
// printable ASCII and '&' (dovecot stores other names in modified UTF-7,
// RFC 3501 §5.1.3, which popfetch does not write), INBOX as the first
// level (the inbox is the Maildir itself), and names longer than
// MaxFolderLen bytes.
func ValidFolder(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty: %w", ErrBadFolder)
	case len(name) > MaxFolderLen:
		return fmt.Errorf("longer than %d bytes: %w", MaxFolderLen, ErrBadFolder)
	case name[0] == '.':
		return fmt.Errorf("%q starts with a dot: write the folder as a mail reader shows it (%q), popfetch adds the Maildir++ dot: %w",
			name, strings.TrimLeft(name, "."), ErrBadFolder)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/':
			return fmt.Errorf("%q contains '/': Maildir++ separates levels with a dot (%q): %w",
				name, strings.ReplaceAll(name, "/", "."), ErrBadFolder)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("contains control character %#02x: %w", c, ErrBadFolder)
		case c > 0x7e:
			return fmt.Errorf("%q contains a byte outside printable ASCII (dovecot keeps such names in modified UTF-7, which popfetch does not write): %w",
				SafeValue(name, MaxFolderLen), ErrBadFolder)
		case c == '&':
			return fmt.Errorf("%q contains '&', the escape character of the modified UTF-7 that dovecot reads folder names in: %w", name, ErrBadFolder)
		}
	}
	levels := strings.Split(name, ".")
	for _, l := range levels {
		if l == "" {
			return fmt.Errorf("%q has an empty level (a dot at the end or two in a row): %w", name, ErrBadFolder)
		}
	}
	if strings.EqualFold(levels[0], "INBOX") {
		return fmt.Errorf("%q: the inbox is the Maildir itself (leave folder unset to deliver there), and INBOX cannot be a folder: %w", name, ErrBadFolder)
	}
	return nil
}

// folderDir is the directory of the folder name inside its Maildir.
func folderDir(name string) string { return "." + name }

// openFolder opens d's folder inside the Maildir root, creating it when
// missing as open creates tmp/: mode 0700, owned by own unless nil, its
// parent fsynced, never through a symlink. Its maildirfolder marker is
// then created if missing (see markFolder), before its tmp/, new/ and
// cur/. The Maildir's own tmp/, new/ and cur/ are created first if
// missing, likewise: a folder of a directory that is no Maildir is
// invisible to readers (dovecot lists the folders of a Maildir only).
func (d *Maildir) openFolder(root *os.File, own *fileOwner) (*os.File, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		f, err := d.openOrCreate(root, sub, false, 0o700, own)
		if err != nil {
			return nil, err
		}
		f.Close()
	}
	f, err := d.openOrCreate(root, folderDir(d.folder), false, 0o700, own)
	if err != nil {
		return nil, err
	}
	if err := d.markFolder(f, own); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// markFolder creates the empty maildirfolder file in the folder dir if it
// is missing, owned by own unless nil, and fsyncs dir so that the marker
// survives a crash with the folder.
func (d *Maildir) markFolder(dir *os.File, own *fileOwner) error {
	f, err := d.fs.OpenExcl(dir, folderMarker, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if own != nil {
		if err := f.Chown(own.uid, own.gid); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := d.fs.SyncDir(dir); err != nil {
		return withPath(dir.Name(), err)
	}
	return nil
}
