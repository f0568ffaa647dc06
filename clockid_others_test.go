//go:build !netbsd

package main

import "golang.org/x/sys/unix"

const clockThreadCPUTime = unix.CLOCK_THREAD_CPUTIME_ID
