package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// The observer's clock is CLOCK_MONOTONIC in nanoseconds, the clock agents
// stamp their frames with. Reading it through the runtime's monotonic time
// (vDSO, no syscall) costs ~20 ns; the raw clock_gettime(2) is read once to
// learn the offset between the two.
var (
	clockStart   = time.Now()
	clockMonoNs0 = monoRaw()
)

func monoRaw() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(clockMonotonic, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// monoNow returns CLOCK_MONOTONIC in nanoseconds.
func monoNow() int64 {
	return clockMonoNs0 + int64(time.Since(clockStart))
}

// clocksNow reads CLOCK_MONOTONIC and the wall clock (Unix ns) from one
// time.Now, which holds both readings.
func clocksNow() (mono, wall int64) {
	t := time.Now()
	return clockMonoNs0 + int64(t.Sub(clockStart)), t.UnixNano()
}

// wallAt converts an earlier monotonic reading to Unix nanoseconds using the
// wall clock of now, so a clock step (NTP on a router that booted in 1970)
// moves every timestamp together instead of freezing stale offsets.
func wallAt(mono, monoNowNs int64) int64 {
	return time.Now().UnixNano() - (monoNowNs - mono)
}
