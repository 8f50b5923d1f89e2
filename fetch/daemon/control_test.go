//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/popfetch/popfetch/fetch"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popfetch/popfetch/internal/testutil"
	"github.com/popfetch/popfetch/rcfile"
)

// controlDaemon is a running daemon whose polls return at once with
// Delivered 3 ("bad" fails). Jitter is maximal so no scheduled poll runs
// during a test on the real clock.
func controlDaemon(t *testing.T) *Daemon {
	t.Helper()
	poll := func(ctx context.Context, a *rcfile.Account, _ fetch.PollOptions) fetch.Result {
		if a.Name == "bad" {
			return fetch.Result{Account: a.Name, Err: fmt.Errorf("%w: [IN-USE] locked", fetch.ErrInUse)}
		}
		return fetch.Result{Account: a.Name, New: 3, Delivered: 3, Deleted: 3}
	}
	d := New(config(acct("a", "pop.example", time.Hour), acct("bad", "pop.example", time.Hour)), poll,
		Options{Jitter: func(m time.Duration) time.Duration { return m }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return d
}

// serve runs ServeControl until the test ends and waits for the socket.
func serve(t *testing.T, path string, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, path, d, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeControl = %v", err)
			}
		case <-time.After(wait):
			t.Errorf("ServeControl did not return after cancel")
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket left behind after ServeControl returned: %v", err)
		}
	})
	deadline := time.Now().Add(wait)
	for {
		select {
		case err := <-done:
			t.Fatalf("ServeControl = %v", err)
		default:
		}
		if conn, err := net.Dial("unix", path); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("control socket %s not up", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestControlRoundTrip(t *testing.T) {
	d := controlDaemon(t)
	path := ControlPath(t.TempDir())
	serve(t, path, d)
	ctx := context.Background()

	st, err := ControlStatus(ctx, path)
	if err != nil {
		t.Fatalf("ControlStatus: %v", err)
	}
	if st.Generation != 1 || st.ConfigPath != "/etc/popfetch.hcl" || len(st.Accounts) != 2 || st.Started.IsZero() {
		t.Fatalf("ControlStatus = %+v; want generation 1, 2 accounts, started", st)
	}

	res, err := ControlNow(ctx, path, []string{"bad", "a"})
	if err != nil {
		t.Fatalf("ControlNow: %v", err)
	}
	if len(res) != 2 || res[0].Account != "bad" || !strings.Contains(res[0].Err, "[IN-USE]") ||
		res[1].Account != "a" || res[1].Delivered != 3 || res[1].Err != "" {
		t.Fatalf("ControlNow = %+v; want bad (IN-USE error), a (3 delivered)", res)
	}
	if res, err := ControlNow(ctx, path, nil); err != nil || len(res) != 2 {
		t.Fatalf("ControlNow(all) = %+v, %v; want 2 results", res, err)
	}
	if _, err := ControlNow(ctx, path, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "unknown account: nope") {
		t.Fatalf("ControlNow(nope) = %v; want unknown account", err)
	}

	st, err = ControlStatus(ctx, path)
	if err != nil {
		t.Fatalf("ControlStatus: %v", err)
	}
	if a := st.Accounts[0]; a.Name != "a" || a.Last == nil || a.Last.Delivered != 3 || a.Totals.Polls != 2 || a.Totals.Delivered != 6 {
		t.Fatalf("status of a = %+v; want 2 polls, 6 delivered", a)
	}
	if a := st.Accounts[0]; a.LastSuccess.IsZero() || !st.Accounts[1].LastSuccess.IsZero() {
		t.Fatalf("LastSuccess of a, bad = %v, %v; want a time for a only", a.LastSuccess, st.Accounts[1].LastSuccess)
	}
	// The last reload travels with its diagnostics.
	at := time.Now().Truncate(time.Second)
	d.RecordReload(at, false, []string{"/etc/popfetch.hcl:3:7: error: Missing newline after argument"})
	if st, err = ControlStatus(ctx, path); err != nil {
		t.Fatalf("ControlStatus: %v", err)
	}
	if r := st.LastReload; r == nil || !r.At.Equal(at) || r.OK || len(r.Diagnostics) != 1 || !strings.HasPrefix(r.Diagnostics[0], "/etc/popfetch.hcl:3:7: ") {
		t.Fatalf("ControlStatus LastReload = %+v; want rejected at %v with one diagnostic", r, at)
	}
	// What `popfetch status` prints of it (the table is cmd/popfetch's
	// writeStatus, tested there): the generation, both accounts, bad in
	// backoff with the server's text.
	if st.Generation != 1 || len(st.Accounts) != 2 || st.Accounts[1].Name != "bad" {
		t.Fatalf("ControlStatus = %+v; want generation 1, accounts a and bad", st)
	}
	if b := st.Accounts[1]; b.State != StateBackoff || b.Last == nil || !strings.Contains(b.Last.Err, "[IN-USE] locked") {
		t.Errorf("status of bad = %+v, last %+v; want backoff with the [IN-USE] text", b, b.Last)
	}
}

func TestControlSocketModes(t *testing.T) {
	path := ControlPath(t.TempDir())
	serve(t, path, controlDaemon(t))
	tests := []struct {
		path string
		want fs.FileMode
	}{
		{filepath.Dir(path), fs.ModeDir | 0o700},
		{path, fs.ModeSocket | 0o600},
	}
	for _, tt := range tests {
		fi, err := os.Lstat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModeType | fs.ModePerm); got != tt.want {
			t.Errorf("mode of %s = %v; want %v", tt.path, got, tt.want)
		}
	}
}

func TestControlSecondServerFails(t *testing.T) {
	d := controlDaemon(t)
	path := ControlPath(t.TempDir())
	serve(t, path, d)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ServeControl(ctx, path, d, nil); !errors.Is(err, ErrDaemonRunning) {
		t.Fatalf("second ServeControl = %v; want ErrDaemonRunning", err)
	}
	// Even without the lock (a lock file deleted by hand), a live socket
	// is not stolen.
	if err := removeStale(path, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrDaemonRunning) {
		t.Fatalf("removeStale(live socket) = %v; want ErrDaemonRunning", err)
	}
	if _, err := ControlStatus(ctx, path); err != nil {
		t.Fatalf("first daemon no longer answers: %v", err)
	}
}

func TestControlStaleSocket(t *testing.T) {
	path := ControlPath(t.TempDir())
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// A killed daemon leaves its socket file behind.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	serve(t, path, controlDaemon(t))
	if _, err := ControlStatus(context.Background(), path); err != nil {
		t.Fatalf("ControlStatus after replacing a stale socket: %v", err)
	}
}

func TestControlRefusesUnsafePaths(t *testing.T) {
	d := controlDaemon(t)
	tests := []struct {
		name  string
		setup func(path string) error
		want  string
	}{
		{"open dir", func(path string) error { return os.Mkdir(filepath.Dir(path), 0o755) }, "must not be accessible to others"},
		{"symlinked dir", func(path string) error {
			target := filepath.Join(filepath.Dir(filepath.Dir(path)), "elsewhere")
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			return os.Symlink(target, filepath.Dir(path))
		}, "not a directory"},
		{"regular file", func(path string) error {
			if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			return os.WriteFile(path, []byte("x"), 0o600)
		}, "not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ControlPath(t.TempDir())
			if err := tt.setup(path); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := ServeControl(ctx, path, d, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ServeControl = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestControlPeerCheck(t *testing.T) {
	tests := []struct {
		peer uint32
		self int
		ok   bool
	}{
		{1000, 1000, true},
		{0, 1000, true}, // root may
		{0, 0, true},
		{65534, 0, false},
		{65534, 1000, false},
		{1001, 1000, false},
	}
	for _, tt := range tests {
		if err := checkPeer(tt.peer, tt.self); (err == nil) != tt.ok {
			t.Errorf("checkPeer(%d, %d) = %v; want ok=%v", tt.peer, tt.self, err, tt.ok)
		}
	}

	// A refused peer gets an error line and nothing else happens.
	d := controlDaemon(t)
	srv, cli := net.Pipe()
	go func() {
		defer srv.Close()
		serveControlConn(context.Background(), srv, d, slog.New(slog.DiscardHandler), 65534, 1000)
	}()
	go json.NewEncoder(cli).Encode(controlRequest{Cmd: "now"})
	cli.SetDeadline(time.Now().Add(wait))
	var resp controlResponse
	if err := json.NewDecoder(cli).Decode(&resp); err != nil {
		t.Fatalf("read refusal: %v", err)
	}
	if !strings.Contains(resp.Error, "permission denied: uid 65534") || resp.Results != nil {
		t.Fatalf("response to another uid = %+v; want a permission error", resp)
	}
	if st := d.Status(); st.Accounts[0].Totals.Polls != 0 {
		t.Fatalf("a refused request polled")
	}
}

// TestControlOtherUID runs a client as nobody: the private directory keeps
// it from even connecting.
func TestControlOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as nobody")
	}
	stateDir := t.TempDir()
	// Open the path up to the state dir, so that only run/ (0700) stands
	// between nobody and the socket.
	for p := stateDir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := ControlPath(stateDir)
	serve(t, path, controlDaemon(t))

	// go test keeps the binary in a 0700 directory: copy it where nobody
	// can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := testutil.CopyExecutable(t, self, testutil.OpenDir(t, "popfetch-helper"), "fetch.test")

	cmd := exec.Command(bin, "-test.run=^TestControlHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "POPFETCH_CONTROL_HELPER="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "STATEDIR-VISIBLE") {
		t.Fatalf("helper could not see the state dir; the test would prove nothing:\n%s", out)
	}
	if !strings.Contains(string(out), "REFUSED:") || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("nobody's ControlStatus was not refused with EACCES:\n%s", out)
	}
}

// TestControlHelperProcess is the client run as nobody by TestControlOtherUID.
func TestControlHelperProcess(t *testing.T) {
	path := os.Getenv("POPFETCH_CONTROL_HELPER")
	if path == "" {
		t.Skip("helper for TestControlOtherUID")
	}
	if _, err := os.Stat(filepath.Dir(filepath.Dir(path))); err == nil {
		fmt.Println("STATEDIR-VISIBLE")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if st, err := ControlStatus(ctx, path); err != nil {
		fmt.Println("REFUSED:", err)
	} else {
		fmt.Printf("ALLOWED: %+v\n", st)
	}
}
