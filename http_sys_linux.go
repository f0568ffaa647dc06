//go:build linux

package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// acceptConn wraps accept4(2), issued directly because unix.Accept4
// allocates a Sockaddr on every call. The new fd is non-blocking and
// close-on-exec from the start; the peer address lands in sa.
// (On linux/386 the direct accept4 system call needs Linux 4.3 or later.)
func acceptConn(lfd int, sa *unix.RawSockaddrAny, salen *uint32) (int, unix.Errno) {
	*salen = unix.SizeofSockaddrAny
	r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(sa)),
		uintptr(unsafe.Pointer(salen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}

// sendConn wraps send(2) with MSG_NOSIGNAL: a peer that went away yields
// EPIPE instead of a SIGPIPE.
func sendConn(fd int, b []byte) (int, unix.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	r, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
