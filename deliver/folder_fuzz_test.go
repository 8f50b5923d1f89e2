package deliver

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidFolder: a name ValidFolder accepts makes one directory name
// inside the Maildir (no separator, not "." or ".."), which filepath
// keeps inside it, of bounded length, printable, with no empty level.
func FuzzValidFolder(f *testing.F) {
	for _, s := range []string{"Junk", "Lists.dev", ".Junk", "a..b", "../x", "a/b", "INBOX", "Entwürfe", "A&B", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidFolder(name) != nil {
			return
		}
		dir := folderDir(name)
		if strings.ContainsRune(dir, '/') || dir == "." || dir == ".." || len(dir) > MaxFolderLen+1 {
			t.Fatalf("accepted %q makes the directory %q", name, dir)
		}
		root := "/m/Maildir"
		if got := filepath.Join(root, dir); filepath.Dir(got) != root {
			t.Fatalf("accepted %q leaves the Maildir: %s", name, got)
		}
		for _, l := range strings.Split(name, ".") {
			if l == "" {
				t.Fatalf("accepted %q has an empty level", name)
			}
		}
		for i := 0; i < len(name); i++ {
			if c := name[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("accepted %q holds byte %#02x", name, c)
			}
		}
	})
}
