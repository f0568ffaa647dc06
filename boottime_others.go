//go:build !linux

package main

import (
	"errors"
	"os"
)

// bootTime reports that the uptime is unknown: only Linux has
// CLOCK_BOOTTIME. The caller must treat an unknown uptime as too short,
// so give_up_exec is refused rather than risk a reboot loop.
func bootTime() (int64, error) {
	return 0, errors.Join(errors.New("CLOCK_BOOTTIME is Linux only"), os.ErrNotExist)
}
