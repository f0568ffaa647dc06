//go:build linux

package main

import "golang.org/x/sys/unix"

// statNoFollow fills st with what the NUL-terminated path names, a symlink
// itself rather than its target, without allocating (unix.Lstat builds a
// C string per call): openat(2) with O_PATH opens the name without opening
// the file (no FIFO blocks, no device is touched), then fstat(2).
func statNoFollow(cpath []byte, st *unix.Stat_t) error {
	fd, e := openCPath(cpath, unix.O_PATH|unix.O_NOFOLLOW)
	if e != 0 {
		return e
	}
	err := unix.Fstat(fd, st)
	unix.Close(fd)
	if err == unix.EBADF {
		// Kernels before 3.6 cannot fstat an O_PATH descriptor.
		return unix.Lstat(string(cpath[:len(cpath)-1]), st)
	}
	return err
}
