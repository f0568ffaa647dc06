//go:build unix && !(dragonfly || freebsd || linux || netbsd || openbsd || solaris)

package main

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// notifySocket returns an unbound AF_UNIX datagram socket, close-on-exec
// and non-blocking. socket(2) here (darwin, aix) takes no SOCK_CLOEXEC, so
// the fd is created under syscall.ForkLock, as the standard library does,
// to keep a concurrent fork from inheriting it before FD_CLOEXEC is set.
func notifySocket() (int, error) {
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}
