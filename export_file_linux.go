//go:build linux

package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// statNoFollow fills st with what the NUL-terminated path names, a symlink
// itself rather than its target, without allocating (unix.Lstat builds a
// C string per call): openat(2) with O_PATH opens the name without opening
// the file (no FIFO blocks, no device is touched), then fstat(2).
func statNoFollow(cpath []byte, st *unix.Stat_t) error {
	atFdcwd := unix.AT_FDCWD
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&cpath[0])),
		uintptr(unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC), 0, 0, 0)
	if e != 0 {
		return e
	}
	err := unix.Fstat(int(fd), st)
	unix.Close(int(fd))
	if err == unix.EBADF {
		// Kernels before 3.6 cannot fstat an O_PATH descriptor.
		return unix.Lstat(string(cpath[:len(cpath)-1]), st)
	}
	return err
}
