//go:build linux

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// pidfdOpen wraps pidfd_open(2) (Linux 5.3): an fd, close-on-exec, that
// polls readable once the process has exited.
func pidfdOpen(pid int) (int, error) {
	for {
		fd, err := unix.PidfdOpen(pid, 0)
		if err == nil {
			return fd, nil
		}
		if !retryable(err) {
			return -1, os.NewSyscallError("pidfd_open", err)
		}
	}
}

// pidfdWorks reports whether this kernel has pidfd_open(2). Routers often
// run 4.x kernels, which answer ENOSYS; seccomp filters may answer EPERM.
// Either way children are then reaped on SIGCHLD.
func pidfdWorks() bool {
	fd, err := pidfdOpen(os.Getpid())
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}
