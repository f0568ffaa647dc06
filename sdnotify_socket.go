//go:build dragonfly || freebsd || linux || netbsd || openbsd || solaris

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// notifySocket returns an unbound AF_UNIX datagram socket, created
// close-on-exec and non-blocking in one socket(2) call so that no recovery
// child forked meanwhile can inherit it.
func notifySocket() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	return fd, nil
}
