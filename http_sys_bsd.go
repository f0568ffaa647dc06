//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// acceptConn wraps accept(2), issued directly because unix.Accept
// allocates a Sockaddr on every call. Darwin has no accept4, so the flags
// are set after; the loop is the only thread that starts children, so no
// exec can slip into the window.
func acceptConn(lfd int, sa *unix.RawSockaddrAny, salen *uint32) (int, unix.Errno) {
	*salen = unix.SizeofSockaddrAny
	r, _, e := unix.Syscall(unix.SYS_ACCEPT, uintptr(lfd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(salen)))
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	if _, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); e != 0 {
		unix.Close(fd)
		return -1, e
	}
	fl, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_GETFL, 0)
	if e == 0 {
		_, _, e = unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_SETFL, fl|unix.O_NONBLOCK)
	}
	if e != 0 {
		unix.Close(fd)
		return -1, e
	}
	return fd, 0
}

// sendConn wraps write(2). These systems lack MSG_NOSIGNAL (Darwin) or
// spell it differently; the Go runtime turns SIGPIPE on a descriptor other
// than stdout/stderr into a plain EPIPE, which is what the caller handles.
func sendConn(fd int, b []byte) (int, unix.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	r, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
