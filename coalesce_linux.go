//go:build linux

package main

import "golang.org/x/sys/unix"

// coalesceEnabled: only Linux bounds the datagram queue by a count
// (max_dgram_qlen) that the coalescer can plan against.
var coalesceEnabled = true

// pauseNs sleeps ns with nanosleep(2): not a runtime timer, which would
// wake other threads.
func pauseNs(ns int64) {
	ts := unix.NsecToTimespec(ns)
	unix.Nanosleep(&ts, nil)
}
