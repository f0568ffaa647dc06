//go:build unix && !linux

package main

import "time"

// hwWatchdogTimeout returns 0: outside Linux there is no portable way to
// ask a device for its timeout, so the loop feeds at the default interval.
// (FreeBSD's watchdog(4) is driven by the WDIOCPATPAT ioctl, not by writes;
// there watchdogd(8) is the tool to use.)
func hwWatchdogTimeout(fd int) time.Duration { return 0 }
