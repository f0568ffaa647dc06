//go:build linux

package main

import "golang.org/x/sys/unix"

// shrinkPipe makes a pipe hold one page, so that a few dozen lines fill it.
func shrinkPipe(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 4096) }
