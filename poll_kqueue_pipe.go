//go:build netbsd || openbsd

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// The wake source is a non-blocking pipe whose read end the kqueue
// watches: these systems have no EVFILT_USER (x/sys/unix defines none for
// them; the Go runtime's netpoll_kqueue_pipe.go does the same).

func (p *poller) addWake() error {
	if err := unix.Pipe2(p.wakeFd[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		p.wakeFd = [2]int{-1, -1}
		return os.NewSyscallError("pipe2", err)
	}
	return p.ctl(p.wakeFd[0], unix.EVFILT_READ, true, true)
}

func (p *poller) isWakeEvent(k *unix.Kevent_t) bool { return int(k.Ident) == p.wakeFd[0] }

// wake writes a byte to the pipe. Safe from any goroutine; a full pipe
// (EAGAIN) already holds a wake.
func (p *poller) wake() {
	b := [1]byte{1}
	unix.Write(p.wakeFd[1], b[:])
}

// drainWake empties the pipe, so that the next wait blocks again.
func (p *poller) drainWake() {
	var b [16]byte
	for {
		n, err := unix.Read(p.wakeFd[0], b[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			return
		}
	}
}
