package delivertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// MDA is a stub delivery program: a /bin/sh script in a test's temporary
// directory. Called as "PATH USER [ARG...]" (its first argument names the
// user; none is user "_"), it notes the run, records its argv, and stores
// its standard input as a new file under Dir/box/USER/, unless a fault is
// set for USER with Fail. Only the stub is a shell script: popfetch runs it
// directly, as it runs any MDA, with no shell of its own.
type MDA struct {
	Path string // the program
	Dir  string // its state: box/, fault-USER, argv, runs, child.pid
}

// NewMDA writes a stub MDA. With next, a user without a fault is served by
// exec'ing next (argv, in which "{user}" stands for the user; the message
// on its standard input) instead of being stored under box/: a fault
// wrapper around a real MDA.
func NewMDA(t testing.TB, next ...string) *MDA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mda")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	deliver := `mkdir -p "$dir/box/$user" && f=$(mktemp "$dir/box/$user/msg.XXXXXX") && exec cat > "$f"`
	if len(next) > 0 {
		var q []string
		for _, a := range next {
			parts := strings.Split(a, "{user}")
			for i := range parts {
				parts[i] = shellQuote(parts[i])
			}
			q = append(q, strings.Join(parts, `"$user"`))
		}
		deliver = "exec " + strings.Join(q, " ")
	}
	src := fmt.Sprintf(`#!/bin/sh
# popfetch test stub MDA (deliver/delivertest).
dir=%s
user=${1:-_}
echo "$user" >> "$dir/runs"
printf '%%s\0' "$0" "$@" > "$dir/argv"
fault=$(cat "$dir/fault-$user" 2>/dev/null)
case "$fault" in
exit*)
	echo "mailbox of $user is unavailable" >&2
	exit "${fault#exit }" ;;
kill)
	kill -KILL $$ ;;
hang)
	sleep 347 &
	echo $! > "$dir/child.pid"
	wait
	exit 0 ;;
esac
%s
`, shellQuote(dir), deliver)
	m := &MDA{Path: filepath.Join(dir, "stub-mda"), Dir: dir}
	if err := os.WriteFile(m.Path, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	return m
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Argv is the stub's command line for an MDA block: the program, then
// args (usually "{user}").
func (m *MDA) Argv(args ...string) []string { return append([]string{m.Path}, args...) }

// Fail sets what goes wrong for user: "exit N" (a line on stderr, then
// exit status N), "kill" (it dies by SIGKILL without reading its input) or
// "hang" (it forks a child "sleep 347", notes the child's PID in ChildPID,
// and waits for it). Fix(user) removes the fault.
func (m *MDA) Fail(t testing.TB, user, fault string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.Dir, "fault-"+user), []byte(fault), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Fix removes user's fault.
func (m *MDA) Fix(t testing.TB, user string) {
	t.Helper()
	if err := os.Remove(filepath.Join(m.Dir, "fault-"+user)); err != nil {
		t.Fatal(err)
	}
}

// ChildPID is the file in which a hanging stub notes its child's PID.
func (m *MDA) ChildPID() string { return filepath.Join(m.Dir, "child.pid") }

// Messages returns the messages stored for user, in no particular order.
func (m *MDA) Messages(t testing.TB, user string) [][]byte {
	t.Helper()
	return readAll(t, filepath.Join(m.Dir, "box", user), Names(t, filepath.Join(m.Dir, "box", user)))
}

// Count counts the messages stored for user.
func (m *MDA) Count(t testing.TB, user string) int {
	t.Helper()
	return len(Names(t, filepath.Join(m.Dir, "box", user)))
}

// Total counts the messages stored for every user.
func (m *MDA) Total(t testing.TB) int {
	t.Helper()
	n := 0
	for _, u := range Names(t, filepath.Join(m.Dir, "box")) {
		n += m.Count(t, u)
	}
	return n
}

// Runs returns the user of each run so far, in order, faults included.
func (m *MDA) Runs(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.Dir, "runs"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// LastArgv returns the argv of the latest run ($0 first).
func (m *MDA) LastArgv(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.Dir, "argv"))
	if err != nil {
		t.Fatalf("the stub MDA did not record its argv: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}
