//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/popfetch/popfetch/fetch"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The control socket lets `popfetch now` and `popfetch status` talk to a
// running daemon. It lives in a private directory (0700, owned by the
// daemon's uid) so that no other user can reach it at any moment: a unix
// socket's mode follows the umask at bind time and chmod afterwards would
// leave a window, but a socket nobody can reach needs no window closed.
// Each connection is also checked with SO_PEERCRED (only the daemon's uid
// or root), for the case where someone loosens the directory.
//
// Protocol: one JSON request per connection, one JSON response.
//
//	{"cmd":"status"}                   → {"status":{...}}
//	{"cmd":"now","accounts":["a",...]} → {"results":[...]}   (no accounts = all)
//	any failure                        → {"error":"...","kind":"..."}
//
// kind names the sentinel of a failure the client acts on
// (controlKinds); the client's error then matches it with errors.Is.
//
// The client keeps its side open until the response arrives: the server
// reads EOF as "the client went away" and stops waiting for a "now".

// ErrDaemonRunning: another daemon holds the control socket.
var ErrDaemonRunning = errors.New("another popfetch daemon is running")

const (
	controlRequestMax = 64 << 10 // a request is a command and a list of names
	controlIOTimeout  = 10 * time.Second
)

// ControlPath is the control socket of a state dir.
func ControlPath(stateDir string) string {
	return filepath.Join(stateDir, "run", "popfetch.sock")
}

type controlRequest struct {
	Cmd      string   `json:"cmd"`
	Accounts []string `json:"accounts,omitempty"`
}

type controlResponse struct {
	Error   string              `json:"error,omitempty"`
	Kind    string              `json:"kind,omitempty"` // a key of controlKinds
	Results []fetch.PollSummary `json:"results,omitempty"`
	Status  *Status             `json:"status,omitempty"`
}

// ServeControl serves the control socket at path until ctx is done, then
// removes the socket and returns nil after the open connections ended. It
// fails with ErrDaemonRunning if another daemon serves path, and removes a
// stale socket left by a killed daemon. It is ListenControl + Serve; use
// those to fail start-up before the first poll.
func ServeControl(ctx context.Context, path string, d *Daemon, log *slog.Logger) error {
	cl, err := ListenControl(path, log)
	if err != nil {
		return err
	}
	return cl.Serve(ctx, d)
}

// ControlListener is a bound control socket; Serve answers on it.
type ControlListener struct {
	path string
	ln   net.Listener
	lock *os.File // flock held for the listener's life
	log  *slog.Logger
}

// ListenControl binds the control socket at path: it makes path's
// directory private (0700), takes the daemon lock next to the socket
// (ErrDaemonRunning if another daemon has it) and replaces a stale socket.
func ListenControl(path string, log *slog.Logger) (*ControlListener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Dir(path)
	if err := privateDir(dir); err != nil {
		return nil, err
	}
	// The lock file, not the socket, decides who owns the directory: two
	// daemons starting together could otherwise both see a stale socket,
	// and one would delete the other's fresh one. flock is released by
	// the kernel when the process dies, so it never goes stale.
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open control lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (it holds %s)", ErrDaemonRunning, path+".lock")
		}
		return nil, fmt.Errorf("lock control socket: %w", err)
	}
	if err := removeStale(path, log); err != nil {
		lock.Close()
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	// Not the protection (the 0700 directory is), but keeps the socket
	// private should someone loosen the directory later.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		lock.Close()
		return nil, fmt.Errorf("chmod control socket: %w", err)
	}
	log.Info("control socket listening", "path", path)
	return &ControlListener{path: path, ln: ln, lock: lock, log: log}, nil
}

// Serve answers requests for d until ctx is done, then removes the socket,
// waits for open connections, releases the lock and returns nil.
func (cl *ControlListener) Serve(ctx context.Context, d *Daemon) error {
	ln, log := cl.ln, cl.log
	defer cl.lock.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() }) // unblocks Accept; unlinks the socket
	defer stop()
	self := os.Geteuid()
	var wg sync.WaitGroup
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// EMFILE and the like: do not spin, do not die.
			log.Warn("control socket accept", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			defer func() {
				if v := recover(); v != nil {
					log.Error("panic in control connection", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				}
			}()
			uid, err := peerUID(conn)
			if err != nil {
				log.Warn("control connection: peer credentials", "err", err)
				writeControl(conn, controlResponse{Error: "cannot check peer credentials"})
				return
			}
			serveControlConn(ctx, conn, d, log, uid, self)
		}()
	}
	ln.Close()
	wg.Wait()
	log.Info("control socket closed", "path", cl.path)
	return nil
}

// privateDir creates dir as 0700 if needed and refuses one that others
// could reach or that is not ours: the socket's privacy rests on it.
func privateDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create control dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("control dir %s is not a directory (a symlink?)", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("control dir %s is not owned by uid %d", dir, os.Geteuid())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("control dir %s has mode %04o; it must not be accessible to others (hint: chmod 0700 %s)",
			dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// removeStale removes a socket at path that no daemon answers on. Under
// the lock no live daemon of ours should exist, but a daemon of an older
// version (or one whose lock file was deleted) might: never steal a live
// socket.
func removeStale(path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; not removing it", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w (control socket %s answers)", ErrDaemonRunning, path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale control socket: %w", err)
	}
	log.Info("removed stale control socket", "path", path)
	return nil
}

// peerUID is the uid of the process at the other end (SO_PEERCRED: the
// kernel's record from connect time, which the peer cannot forge).
func peerUID(conn net.Conn) (uint32, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix socket: %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("getsockopt SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}

// checkPeer allows the daemon's own uid and root.
func checkPeer(peer uint32, self int) error {
	if peer == 0 || int64(peer) == int64(self) {
		return nil
	}
	return fmt.Errorf("permission denied: uid %d may not control the popfetch daemon of uid %d", peer, self)
}

// serveControlConn answers one request from a peer with uid peer.
func serveControlConn(ctx context.Context, conn net.Conn, d *Daemon, log *slog.Logger, peer uint32, self int) {
	conn.SetReadDeadline(time.Now().Add(controlIOTimeout))
	var req controlRequest
	decodeErr := json.NewDecoder(io.LimitReader(conn, controlRequestMax)).Decode(&req)
	if err := checkPeer(peer, self); err != nil {
		// The request was read (and is ignored) first: closing with it
		// unread would reset the connection, and the client would see a
		// broken pipe instead of the reason.
		log.Warn("control connection refused", "uid", peer)
		writeControl(conn, controlResponse{Error: err.Error()})
		return
	}
	if err := decodeErr; err != nil {
		writeControl(conn, controlResponse{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	conn.SetReadDeadline(time.Time{})

	var resp controlResponse
	switch req.Cmd {
	case "status":
		s := d.Status()
		resp.Status = &s
	case "now":
		// A client that hangs up (^C) no longer waits: stop waiting too.
		// The polls it asked for still run, as PollNow documents.
		ctx, cancel := context.WithCancel(ctx)
		go func() {
			io.Copy(io.Discard, conn)
			cancel()
		}()
		log.Info("poll requested over the control socket", "accounts", strings.Join(req.Accounts, ","))
		res, err := d.PollNow(ctx, req.Accounts)
		cancel()
		if err != nil {
			resp.Error = err.Error()
			for k, sentinel := range controlKinds {
				if errors.Is(err, sentinel) {
					resp.Kind = k
				}
			}
			break
		}
		resp.Results = make([]fetch.PollSummary, len(res))
		for i, r := range res {
			resp.Results[i] = fetch.Summarize(r)
		}
	default:
		resp.Error = fmt.Sprintf("unknown command %q", req.Cmd)
	}
	writeControl(conn, resp)
}

func writeControl(conn net.Conn, resp controlResponse) {
	conn.SetWriteDeadline(time.Now().Add(controlIOTimeout))
	json.NewEncoder(conn).Encode(resp) // the client sees a failure as a truncated response
}

// controlRoundTrip sends one request and reads the response.
func controlRoundTrip(ctx context.Context, path string, req controlRequest) (controlResponse, error) {
	var resp controlResponse
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return resp, fmt.Errorf("no popfetch daemon is running (control socket %s): %w", path, err)
		}
		return resp, fmt.Errorf("connect to the popfetch daemon: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return resp, ctxOr(ctx, fmt.Errorf("send control request: %w", err))
	}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return resp, ctxOr(ctx, fmt.Errorf("read control response: %w", err))
	}
	if resp.Error != "" {
		return resp, &remoteError{msg: resp.Error, kind: controlKinds[resp.Kind]}
	}
	return resp, nil
}

// controlKinds are the failures of a request that the client tells apart:
// a `popfetch now` for an account the daemon does not poll is a usage
// error, not a daemon out of reach.
var controlKinds = map[string]error{
	"unknown-account": ErrUnknownAccount,
	"other-shard":     ErrOtherShard,
}

// remoteError is a failure the daemon reported; it matches its sentinel
// (controlKinds), if any, with errors.Is.
type remoteError struct {
	msg  string
	kind error // nil for any other failure
}

func (e *remoteError) Error() string { return "popfetch daemon: " + e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// ctxOr prefers the context's error: a closed conn after cancel is noise.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// ControlNow asks the daemon at path to poll accounts (all if empty) now
// and returns their results. Errors of single polls are in the results;
// the error is for the request as a whole (no daemon, unknown account).
func ControlNow(ctx context.Context, path string, accounts []string) ([]fetch.PollSummary, error) {
	resp, err := controlRoundTrip(ctx, path, controlRequest{Cmd: "now", Accounts: accounts})
	return resp.Results, err
}

// ControlStatus asks the daemon at path for its status.
func ControlStatus(ctx context.Context, path string) (Status, error) {
	resp, err := controlRoundTrip(ctx, path, controlRequest{Cmd: "status"})
	if err != nil {
		return Status{}, err
	}
	if resp.Status == nil {
		return Status{}, errors.New("popfetch daemon: empty status response")
	}
	return *resp.Status, nil
}
