//go:build !linux

package main

import "golang.org/x/sys/unix"

// statNoFollow fills st with what the NUL-terminated path names, a symlink
// itself rather than its target.
func statNoFollow(cpath []byte, st *unix.Stat_t) error {
	return unix.Lstat(string(cpath[:len(cpath)-1]), st)
}
