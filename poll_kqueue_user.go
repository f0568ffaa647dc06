//go:build darwin || dragonfly || freebsd

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// The wake source is an EVFILT_USER event: triggering it needs no fd, and
// EV_CLEAR resets it once reported.

const wakeIdent = 0x7661 // arbitrary, never a real fd in EVFILT_USER's namespace

func (p *poller) addWake() error {
	ev := [1]unix.Kevent_t{{Ident: wakeIdent, Filter: unix.EVFILT_USER, Flags: unix.EV_ADD | unix.EV_CLEAR}}
	if _, err := unix.Kevent(p.kq, ev[:], nil, nil); err != nil {
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

func (p *poller) isWakeEvent(k *unix.Kevent_t) bool { return k.Filter == unix.EVFILT_USER }

// wake triggers the EVFILT_USER event. Safe from any goroutine.
func (p *poller) wake() {
	ev := [1]unix.Kevent_t{{Ident: wakeIdent, Filter: unix.EVFILT_USER, Fflags: unix.NOTE_TRIGGER}}
	unix.Kevent(p.kq, ev[:], nil, nil)
}

func (p *poller) drainWake() {}
