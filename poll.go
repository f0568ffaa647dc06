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
