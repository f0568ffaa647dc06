//go:build !linux

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// pidfdOpen: only Linux has pidfds; children are reaped on SIGCHLD.
func pidfdOpen(pid int) (int, error) { return -1, os.NewSyscallError("pidfd_open", unix.ENOSYS) }

func pidfdWorks() bool { return false }

// closeInheritedOnExec: recovery is refused where there is no /proc to list
// descriptors from (no per-datagram credentials either), so nothing is
// ever exec'd.
func closeInheritedOnExec() error { return nil }
