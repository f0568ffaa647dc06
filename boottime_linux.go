package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// bootTime returns how long the machine has been up, in nanoseconds:
// clock_gettime(2) with CLOCK_BOOTTIME, which unlike CLOCK_MONOTONIC keeps
// counting while the system is suspended. give_up_min_uptime_s is judged
// by it (contract §9), so that a give_up_exec such as /sbin/reboot cannot
// loop a router through reboots. A time namespace (unshare -T --boottime)
// offsets it like the rest of its clocks.
func bootTime() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, os.NewSyscallError("clock_gettime", err)
	}
	return ts.Nano(), nil
}
