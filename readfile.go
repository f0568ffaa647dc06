package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// The observer reads its few small files (sysctls, /proc, the token file)
// with open(2) and read(2) rather than os.ReadFile or os.Stat: those build
// an os.FileInfo, whose ModTime drags time formatting and time zone loading
// into the binary (about 20 KB of an ARM build).

// openFile opens path read-only, close-on-exec and non-blocking (a FIFO
// planted at the path must not hang the start).
func openFile(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// readAll reads fd to its end, or to more than limit bytes, which it
// returns (the caller tells a long file by the length).
func readAll(fd int, path string, limit int) ([]byte, error) {
	b := make([]byte, 0, min(limit+1, 4096))
	for len(b) <= limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):min(cap(b), limit+1)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		b = b[:len(b)+n]
	}
	return b, nil
}

// readFile reads a small file whole, at most limit+1 bytes of it.
func readFile(path string, limit int) ([]byte, error) {
	fd, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readAll(fd, path, limit)
}
