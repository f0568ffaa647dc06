//go:build !linux

package main

import (
	"os"
)

// maxDgramQlen returns an error wrapping os.ErrNotExist: the datagram queue
// limit net.unix.max_dgram_qlen is Linux's. (BSDs bound a Unix datagram
// socket's queue by its receive buffer, net.local.dgram.recvspace.)
func maxDgramQlen() (int, error) {
	return 0, wrapf(os.ErrNotExist, "net.unix.max_dgram_qlen")
}
