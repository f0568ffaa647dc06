//go:build linux

package main

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockSocketPath serialises observers starting on the same socket path.
// Without it, two observers that start at the same instant on a stale
// socket can both find it stale; the second then unlinks the first one's
// fresh socket and binds its own, and the first runs on, deaf.
//
// The lock is a datagram socket bound to an abstract name (Linux): the
// kernel releases it when the process dies, however it dies, so a crash
// never leaves a stale lock, and no file is created. The name is made of
// the device and inode of the socket's directory and the socket's file
// name, so every spelling of the path (relative, through a symlinked
// directory) takes the same lock. Abstract names belong to a network
// namespace: observers in different ones are not serialised (the
// connect test on the path still tells a live observer).
//
// It returns the lock's descriptor (close-on-exec: a recovery child must
// not hold it after the observer is gone), or busy when another observer
// holds it. When no lock can be taken for another reason, fd is -1 and the
// start goes on without one.
func lockSocketPath(path string) (fd int, busy bool) {
	dirPath, name := ".", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dirPath, name = path[:i+1], path[i+1:] // "/x" keeps "/", "a/b" "a/"
	}
	var dir unix.Stat_t
	if unix.Stat(dirPath, &dir) != nil {
		return -1, false // bind will say what is wrong with the directory
	}
	prefix := "varta-watch/" + strconv.FormatUint(uint64(dir.Dev), 16) + "/" + strconv.FormatUint(uint64(dir.Ino), 16) + "/"
	if len(prefix)+len(name) > maxSocketPath {
		name = "#" + strconv.FormatUint(fnv64a(name), 16)
	}
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		return -1, false
	}
	switch err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@" + prefix + name}); err {
	case nil:
		return fd, false
	case unix.EADDRINUSE:
		unix.Close(fd)
		return -1, true
	default:
		unix.Close(fd)
		return -1, false
	}
}

// fnv64a is the 64-bit FNV-1a hash of s (hash/fnv costs the binary more).
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
