//go:build linux

package main

import (
	"fmt"
	"os"
	"syscall"
)

// asStateOwner runs fn with the effective uid and gid of the owner of
// the state directory state when popfetch runs as root and the directory
// belongs to another user (the daemon's): what fn creates there (the
// learned routes, popfetch reroute --learn) is then that user's, so the
// daemon can read and replace it, and every check fn makes (internal/trust)
// is made as that user. Otherwise fn runs as it is. The real and saved
// uid stay root, so the effective ids are switched back afterwards; on
// Linux Go applies setresuid to every thread of the process.
func asStateOwner(state string, fn func() error) error {
	var st syscall.Stat_t
	if os.Geteuid() != 0 || syscall.Stat(state, &st) != nil || st.Uid == 0 {
		return fn()
	}
	groups, err := syscall.Getgroups()
	if err != nil {
		return err
	}
	egid := os.Getegid()
	if err := syscall.Setgroups([]int{int(st.Gid)}); err != nil {
		return fmt.Errorf("become the owner of %s: %w", state, err)
	}
	if err := syscall.Setresgid(-1, int(st.Gid), -1); err != nil {
		restoreIDs(groups, egid)
		return fmt.Errorf("become the owner of %s: %w", state, err)
	}
	if err := syscall.Setresuid(-1, int(st.Uid), -1); err != nil {
		restoreIDs(groups, egid)
		return fmt.Errorf("become the owner of %s: %w", state, err)
	}
	defer func() {
		if err := syscall.Setresuid(-1, 0, -1); err != nil {
			// Going on as another user than the one the admin ran would
			// deliver with the wrong rights: stop.
			panic(fmt.Sprintf("popfetch: cannot become root again: %v", err))
		}
		restoreIDs(groups, egid)
	}()
	return fn()
}

func restoreIDs(groups []int, egid int) {
	if err := syscall.Setresgid(-1, egid, -1); err != nil {
		panic(fmt.Sprintf("popfetch: cannot restore the group id: %v", err))
	}
	if err := syscall.Setgroups(groups); err != nil {
		panic(fmt.Sprintf("popfetch: cannot restore the groups: %v", err))
	}
}
