package deliver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/delivertest"
)

// killMessage is a 1 MiB message, far more than a pipe buffer holds.
func killMessage() (raw, lfBody string) {
	var b strings.Builder
	for i := range 1 << 20 / 16 {
		fmt.Fprintf(&b, "line %08d\r\n", i)
	}
	b.WriteString("END-OF-MESSAGE\r\n")
	body := b.String()
	return "Subject: kill test\r\n\r\n" + body, strings.ReplaceAll(body, "\r\n", "\n")
}

// TestMDAKilledParentHelper is the popfetch that TestMDAKilledParent kills:
// it delivers killMessage to slowread.sh and is killed while that MDA reads.
func TestMDAKilledParentHelper(t *testing.T) {
	out := os.Getenv("POPFETCH_TEST_MDA_KILL_OUT")
	if out == "" {
		t.Skip("helper process of TestMDAKilledParent")
	}
	d, err := NewMDA([]string{mdaScript(t, "slowread.sh")}, MDAOptions{
		Timeout: time.Minute, LocalHost: "mx.local",
		Env: []string{"PATH=/usr/bin:/bin", "OUT=" + out, "FIRST=" + os.Getenv("POPFETCH_TEST_MDA_KILL_FIRST")},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := killMessage()
	t.Fatalf("Deliver returned %v; it should have been killed first", d.Deliver(context.Background(), mdaMessage(raw), "", []Recipient{{}}, nil))
}

// An MDA outlives a popfetch killed with SIGKILL (own process group).
// Whatever it reads after that must still be the whole message: before,
// it read the rest from a pipe whose writer had died, got EOF after what
// the pipe buffer held, and delivered a truncated message. Killed before
// the MDA read anything, and at two points while it read.
func TestMDAKilledParent(t *testing.T) {
	_, body := killMessage()
	for _, first := range []int{0, 3, 150} { // 4 KiB blocks read before the kill
		t.Run(strconv.Itoa(first), func(t *testing.T) {
			out := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMDAKilledParentHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), "POPFETCH_TEST_MDA_KILL_OUT="+out, "POPFETCH_TEST_MDA_KILL_FIRST="+strconv.Itoa(first))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if b, err := os.ReadFile(filepath.Join(out, "pid")); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
						syscall.Kill(-pid, syscall.SIGKILL)
					}
				}
			})
			waitFile(t, filepath.Join(out, "started"))
			cmd.Process.Kill()
			cmd.Wait()
			if err := os.WriteFile(filepath.Join(out, "go"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			waitFile(t, filepath.Join(out, "done"))
			got, err := os.ReadFile(filepath.Join(out, "stdin"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(got, []byte(body)) || !bytes.HasPrefix(got, []byte("Received: ")) {
				t.Fatalf("the MDA read %d bytes after popfetch was killed; want the whole copy (%d bytes of body, ending %q); it ends %q",
					len(got), len(body), "END-OF-MESSAGE", got[max(0, len(got)-40):])
			}
		})
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s did not appear", path)
}

// The input is a file, so how much an MDA read is its offset, except for
// an MDA that uses pread(2) (dovecot-lda): the access time shows it did
// read. An MDA that read nothing, or stopped part-way, has not delivered.
func TestMDAInputRead(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed (pread.sh)")
	}
	raw, _ := killMessage()
	for _, tc := range []struct {
		script string
		ok     bool
	}{
		{"stub", true}, // delivertest's stub MDA: reads it all
		{"pread.sh", true},
		{"noread.sh", false},
		{"partread.sh", false},
	} {
		prog := delivertest.NewMDA(t).Path
		if tc.script != "stub" {
			prog = mdaScript(t, tc.script)
		}
		d, _ := newTestMDA(t, []string{prog}, MDAOptions{})
		err := d.Deliver(context.Background(), mdaMessage(raw), "", []Recipient{{}}, nil)[0]
		if (err == nil) != tc.ok {
			t.Errorf("%s: Deliver = %v; want ok=%v", tc.script, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "without reading all") {
			t.Errorf("%s: Deliver = %v; want the input named", tc.script, err)
		}
	}
}
