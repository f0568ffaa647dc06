package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// hwWatchdogTimeout asks the driver for its timeout with the
// WDIOC_GETTIMEOUT ioctl (seconds). It returns 0 when the fd is not a
// watchdog (ENOTTY for a regular file or FIFO) or the driver does not say.
func hwWatchdogTimeout(fd int) time.Duration {
	secs, err := unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT)
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}
