//go:build linux

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// Linux attaches the sender's credentials to every datagram once
// SO_PASSCRED is on; MSG_TRUNC makes recvmsg return the real length of a
// datagram longer than the buffer.
const (
	recvFlags        = unix.MSG_DONTWAIT | unix.MSG_TRUNC | unix.MSG_CMSG_CLOEXEC
	scmCredentials   = unix.SCM_CREDENTIALS
	hasDatagramCreds = true
	isDarwin         = false
)

func enableCredentials(fd int) error {
	return os.NewSyscallError("setsockopt SO_PASSCRED", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1))
}

// newSocket creates a non-blocking, close-on-exec socket in one call.
func newSocket(domain, typ int) (int, error) {
	return unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}
