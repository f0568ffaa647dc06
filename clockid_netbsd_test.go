package main

// clockThreadCPUTime is CLOCK_THREAD_CPUTIME_ID of NetBSD's <time.h>,
// which x/sys/unix does not define there.
const clockThreadCPUTime = 0x20000000
