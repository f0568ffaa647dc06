//go:build !linux

package main

import "golang.org/x/sys/unix"

// openQueuedSocket creates the observer's datagram socket. Only Linux
// bounds a datagram queue by a count (net.unix.max_dgram_qlen); the BSDs
// bound it by the receive buffer, so want is not used.
func openQueuedSocket(want int) (int, socketQueue, error) {
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	return fd, socketQueue{}, err
}

// socketHelper is Linux's (socketqueue_linux.go): nothing to do here.
func socketHelper() {}
