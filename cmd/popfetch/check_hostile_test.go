package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// auditRouteRC writes the route test's rc file with its state directory
// in a temporary directory and returns its path.
func auditRouteRC(t *testing.T) (rc, dir string) {
	t.Helper()
	src, err := os.ReadFile("testdata/route/rc.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	rc = filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, strings.ReplaceAll(string(src), "STATE", filepath.Join(dir, "state")))
	return rc, dir
}

// TestCheckRouteFIFO: `check --route FIFO` must not hang: a FIFO
// given by mistake (or a /dev/stdin of a terminal) is an error, not a
// wait forever for a writer.
func TestCheckRouteFIFO(t *testing.T) {
	rc, dir := auditRouteRC(t)
	fifo := filepath.Join(dir, "msg.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan int, 1)
	go func() {
		code, _, _ := runCLI(t, "-f", rc, "check", "--route", "--account", "corp", fifo)
		done <- code
	}()
	select {
	case code := <-done:
		if code == exitOK {
			t.Errorf("check --route FIFO = %d; want an error", code)
		}
	case <-time.After(5 * time.Second):
		// Unblock the reader stuck in open(2) so the test ends.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		<-done
		t.Errorf("check --route on a FIFO hung for 5s")
	}
}

// TestCheckRouteHostileFiles: a directory, a binary file, a huge
// header and a header with terminal escapes give an answer, never a hang,
// and nothing the server's sender chose reaches the terminal raw.
func TestCheckRouteHostileFiles(t *testing.T) {
	rc, dir := auditRouteRC(t)
	sub := filepath.Join(dir, "adir")
	os.Mkdir(sub, 0o755)
	bin := filepath.Join(dir, "bin.eml")
	writeFile(t, bin, "\x00\xff\xfe\x1b[2J\x00binary\r\n\r\n")
	huge := filepath.Join(dir, "huge.eml")
	writeFile(t, huge, "Delivered-To: joe@example.com\r\nX-Big: "+strings.Repeat("a", 4<<20)+"\r\n\r\nbody\r\n")
	esc := filepath.Join(dir, "esc.eml")
	writeFile(t, esc, "Delivered-To: \x1b]0;pwned\x07evil\x1b[31m@example.com\r\nTo: \x1b[2Jjoe@example.com\r\n\r\nbody\r\n")
	done := make(chan struct{})
	var out, errs string
	go func() {
		defer close(done)
		_, out, errs = runCLI(t, "-f", rc, "check", "--route", "--account", "corp", sub, bin, huge, esc)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("check --route hung")
	}
	for _, s := range []string{out, errs} {
		if strings.ContainsAny(s, "\x1b\x07\x00") {
			t.Errorf("check --route printed a control character:\n%q", s)
		}
	}
	if !strings.Contains(out, "adir: error:") {
		t.Errorf("directory: no error line\n%s", out)
	}
}

// snapshotTree lists every path under root with its mode, size and
// modification time.
func snapshotTree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		m[p] = fi.Mode().String() + " " + fi.ModTime().String() + " " + string(rune(fi.Size()%1000))
		return nil
	})
	return m
}

// TestCheckCreatesNothing: `popfetch check` (without --connect)
// creates or changes nothing: not the state directory, not a Maildir
// missing its cur/new/tmp, not a Maildir behind a {user} template, not a
// learned-routes file, with the Maildir path reached through a symlink.
func TestCheckCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "md"), 0o700) // exists, no cur/new/tmp
	os.Mkdir(filepath.Join(dir, "real"), 0o700)
	os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link"))
	os.Mkdir(filepath.Join(dir, "users"), 0o700)
	rc := filepath.Join(dir, "rc.hcl")
	writeFile(t, rc, `state_dir = "`+dir+`/state"
account "single" {
  server   = "127.0.0.1"
  tls      = "none"
  username = "u"
  password = "x"
  deliver {
    maildir = "`+dir+`/md"
  }
}
account "sym" {
  server   = "127.0.0.1"
  tls      = "none"
  username = "u2"
  password = "x"
  deliver {
    maildir = "`+dir+`/link/sub/Maildir"
  }
}
account "multi" {
  server   = "127.0.0.1"
  tls      = "none"
  username = "all"
  password = "x"
  deliver {
    maildir = "`+dir+`/users/{user}/Maildir"
  }
  postmaster {
    maildir = "`+dir+`/pm"
  }
  multidrop {
    local_domains = ["example.com"]
    user "joe" {
      addresses = ["joe"]
    }
  }
}
`)
	os.Chmod(rc, 0o600)
	before := snapshotTree(t, dir)
	code, out, errs := runCLI(t, "-f", rc, "check")
	after := snapshotTree(t, dir)
	for p, v := range after {
		if w, ok := before[p]; !ok {
			t.Errorf("check created %s", p)
		} else if w != v {
			t.Errorf("check changed %s: %s -> %s", p, w, v)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("check removed %s", p)
		}
	}
	t.Logf("check = %d\n%s%s", code, out, errs)
	if code == exitConfig {
		t.Fatalf("rc file rejected: %s", errs)
	}
}
