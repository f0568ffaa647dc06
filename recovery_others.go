//go:build !linux

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// pidfdOpen: only Linux has pidfds; children are reaped on SIGCHLD.
func pidfdOpen(pid int) (int, error) { return -1, os.NewSyscallError("pidfd_open", unix.ENOSYS) }

func pidfdWorks() bool { return false }
