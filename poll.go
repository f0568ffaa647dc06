package main

import (
	"golang.org/x/sys/unix"
)

// pollEvent is one readiness report from the poller.
type pollEvent struct {
	fd       int
	readable bool
	writable bool
	hangup   bool
}

// maxPollEvents bounds how many readiness reports one wait returns.
const maxPollEvents = 128

// retryable reports whether err is the transient result of a non-blocking
// or interrupted call: EAGAIN/EWOULDBLOCK (nothing to do now) or EINTR (a
// signal arrived; try again). It is the one place that decides.
func retryable(err error) bool {
	return err == unix.EAGAIN || err == unix.EWOULDBLOCK || err == unix.EINTR
}

// kqueueMaxTimeoutNs caps kevent(2)'s timeout at 1e6 s, as the Go runtime
// does (netpoll_kqueue.go: Darwin returns EINVAL if the sleep time is too
// long), while --shutdown-after-secs allows 100 years.
const kqueueMaxTimeoutNs = 1e6 * 1e9

// kqueueTimeoutNs is the timeout kevent(2) is given for one of timeoutNs
// (not negative): the loop simply waits again when a capped wait ends.
func kqueueTimeoutNs(timeoutNs int64) int64 { return min(timeoutNs, kqueueMaxTimeoutNs) }
