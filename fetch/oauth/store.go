package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/popfetch/popfetch/internal/durable"
	"github.com/popfetch/popfetch/internal/trust"
)

// ErrInsecureTokenFile: the token file can be read by group or others
// (or changed by another user), so its tokens may be someone else's too.
// popfetch neither uses nor overwrites it.
var ErrInsecureTokenFile = errors.New("token file is readable by group or others")

// errCorrupt marks a token file that is not one (invalid JSON): only a
// new sign-in can replace it (Source.Token makes it ErrLoginRequired).
var errCorrupt = errors.New("not a popfetch token file")

// stored is the token file's content: one JSON object.
type stored struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// Obtained is when the access token was issued to popfetch.
	Obtained time.Time `json:"obtained,omitzero"`
	// RefreshUsed is when the refresh token last got a new access token
	// (providers expire one left idle: Microsoft after 90 days).
	RefreshUsed time.Time `json:"refresh_used,omitzero"`
	// RefreshExpiry is when the refresh token stops working, as far as
	// the provider said (refresh_token_expires_in: Google's apps in
	// testing mode and time-based access); zero = not known to expire.
	// RefreshIssued is when popfetch learnt it for this refresh token
	// (the sign-in, or the rotation that brought it): the token's life
	// runs from there to RefreshExpiry.
	RefreshExpiry time.Time `json:"refresh_expiry,omitzero"`
	RefreshIssued time.Time `json:"refresh_issued,omitzero"`
}

// maxTokenFile bounds the token file read; a real one is a few kilobytes.
const maxTokenFile = 256 << 10

// TokenPath is the file that holds the tokens of account in stateDir.
func TokenPath(stateDir, account string) string {
	return filepath.Join(stateDir, "oauth2-"+account+".json")
}

// readTokens reads the token file; ok is false if it does not exist. A
// file that group or others can read is refused (ErrInsecureTokenFile),
// and so is one another user could have written (internal/trust), and a
// symbolic link (popfetch replaces the file by rename, never through a
// link).
func readTokens(path string) (t stored, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return stored{}, false, nil
	}
	if errors.Is(err, syscall.ELOOP) {
		return stored{}, false, fmt.Errorf("%s is a symbolic link; popfetch keeps its tokens in a file of its own there: remove the link and run popfetch login again", path)
	}
	if err != nil {
		return stored{}, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return stored{}, false, err
	}
	if !fi.Mode().IsRegular() {
		return stored{}, false, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o044 != 0 {
		return stored{}, false, fmt.Errorf("%s has mode %04o: %w (hint: chmod 600 %s, and consider the tokens leaked: run popfetch login again)",
			path, fi.Mode().Perm(), ErrInsecureTokenFile, path)
	}
	if err := trust.CheckInfo(path, fi); err != nil {
		return stored{}, false, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return stored{}, false, err
	}
	if len(b) > maxTokenFile {
		return stored{}, false, fmt.Errorf("%s is larger than %d bytes", path, maxTokenFile)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		// Never quote the content: it holds tokens.
		return stored{}, false, fmt.Errorf("%s is %w (invalid JSON at byte %d)", path, errCorrupt, jsonOffset(err))
	}
	return t, true, nil
}

func jsonOffset(err error) int64 {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Offset
	}
	return 0
}

// writeTokens replaces the token file atomically and durably: a new file
// created 0600 with O_EXCL (never chmod afterwards), written, fsynced,
// renamed over the old one, and the directory fsynced, so that a crash
// leaves either the old tokens or the new ones, never a torn file; a
// rotated refresh token is lost only if the rename is.
func writeTokens(path string, t stored) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	f, err := os.OpenFile(tmp, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Left by a process with our pid that died; we hold the lock,
		// so nobody else writes it.
		os.Remove(tmp)
		f, err = os.OpenFile(tmp, flags, 0o600)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write token file %s: %w", path, err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("write token file %s: %w", path, err)
	}
	return nil
}

// lockTokens takes the account's token lock (flock on a separate file:
// the token file itself is replaced by rename, so a lock on it would be
// on the old inode), waiting until ctx ends. Two processes, or two
// Sources in one, never refresh at once: a provider that rotates refresh
// tokens invalidates the old one, so the loser of a race would send a
// dead token and could have the whole grant revoked.
//
// The state directory must pass checkStateDir first, and the lock file is
// opened without following a symbolic link and must be a regular file of
// the user popfetch runs as: otherwise a link planted there would make
// popfetch (root, for a system daemon) create a file wherever it points.
func lockTokens(ctx context.Context, path string) (unlock func(), err error) {
	if err := checkStateDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("the token lock %s is a symbolic link, which popfetch never creates: check who made it, then remove it", name)
	}
	if err != nil {
		return nil, err
	}
	if err := checkLockFile(f, name); err != nil {
		f.Close()
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path+".lock", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the token lock %s: %w", path+".lock", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkStateDir refuses a state directory that another user can write
// or that another user owns, or any directory above it that such a user
// could change (internal/trust's rules): that user could rename the token
// file away, replace it, or plant symbolic links where popfetch creates
// its files. Unlike internal/trust, it refuses the state directory itself
// even with the sticky bit (as /tmp has): there another user could still
// create the names popfetch uses, a lock file of their own that blocks
// every refresh, or temporary token files it cannot remove.
//
// It creates the directory (0700) if it is missing.
func checkStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := trust.CheckDir(dir); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		if fi.Mode()&os.ModeSticky != 0 {
			perm |= 0o1000
		}
		return fmt.Errorf("state directory: %s has mode %04o: other users can create files in it (the sticky bit does not prevent that), such as a token lock that blocks every refresh: give popfetch a directory of its own (chmod 700 %s, or set state_dir)",
			dir, perm, dir)
	}
	return nil
}

// checkLockFile accepts only a regular file owned by the user popfetch
// runs as.
func checkLockFile(f *os.File, name string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("the token lock %s is not a regular file (%s): check who made it, then remove it", name, fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("the token lock %s is owned by uid %d, not by the user popfetch runs as (uid %d): check who made it, then remove it", name, st.Uid, os.Geteuid())
	}
	return nil
}

// recoverTemp deals with the temporary files writeTokens leaves when
// popfetch is killed between creating one and renaming it over path.
// The caller holds the token lock, so no live process is writing one. A
// complete token file obtained after both the one at path and newer
// (popfetch's tokens in memory, or zero) may hold a rotated refresh
// token that exists nowhere else: it is fsynced and renamed into place
// (adopted reports that). Anything else is removed; one that cannot be
// (err reports the first) does not stop the others.
func recoverTemp(path string, newer time.Time) (adopted bool, err error) {
	dir, base := filepath.Dir(path), filepath.Base(path)+".tmp"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		pid, ok := strings.CutPrefix(e.Name(), base)
		if !ok || pid == "" || strings.Trim(pid, "0123456789") != "" {
			continue
		}
		tmp := filepath.Join(dir, e.Name())
		t, ok, rerr := readTokens(tmp)
		cur, cok, cerr := readTokens(path)
		if cok && cur.Obtained.After(newer) {
			newer = cur.Obtained
		}
		if rerr != nil || !ok || t.AccessToken == "" || !t.Obtained.After(newer) || cerr != nil && !errors.Is(cerr, errCorrupt) {
			if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
				// Go on: a later one may hold the only copy of a
				// rotated refresh token.
				err = rmErr
			}
			continue
		}
		if err := syncFile(tmp); err != nil {
			return adopted, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return adopted, err
		}
		if err := durable.SyncDir(dir); err != nil {
			return adopted, err
		}
		adopted = true
	}
	return adopted, err
}

// syncFile makes a file's content durable before it is renamed into
// place: a temporary file left by a killed process may not have been
// fsynced.
func syncFile(name string) error {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
