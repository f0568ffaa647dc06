//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package main

import (
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// These systems attach no per-datagram sender pid that an unprivileged
// receiver can rely on, so the observer trusts the socket mode, warns at
// start, and refuses recovery (a forged pid could make it kill anything).
const (
	recvFlags        = unix.MSG_DONTWAIT
	scmCredentials   = -1
	scmTimestampNS   = -1 // not requested: arrival times are the read times
	hasDatagramCreds = false
	isDarwin         = runtime.GOOS == "darwin"
)

func enableCredentials(fd int) error { return nil }

// newSocket creates a non-blocking, close-on-exec socket. Darwin has no
// SOCK_NONBLOCK/SOCK_CLOEXEC type flags, so the flags are set after, under
// syscall.ForkLock as the standard library does: a fork in between would
// otherwise inherit the fd.
func newSocket(domain, typ int) (int, error) {
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(domain, typ, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// recvBatchSize 1: recv reads one datagram per recvmsg(2) here; recvmmsg
// is Linux's (and FreeBSD's, but not Darwin's or OpenBSD's).
const recvBatchSize = 1

type recvBatch struct{}

func (s *vlpSocket) recvBatched() (recvResult, unix.Errno) { return recvResult{}, unix.ENOSYS }

func (s *vlpSocket) queueWasEmpty() bool { return false }

func (s *vlpSocket) batchPending() bool { return false }
