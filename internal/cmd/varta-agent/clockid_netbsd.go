package main

// clockMonotonic is CLOCK_MONOTONIC of NetBSD's <sys/time.h>, which
// x/sys/unix does not define there.
const clockMonotonic = 3
