//go:build !linux

package main

// asStateOwner runs fn (see runas_linux.go): elsewhere the effective ids
// are not switched for all threads, so a state directory of another user
// is refused by deliver/learned, which says to run as that user.
func asStateOwner(state string, fn func() error) error { return fn() }
