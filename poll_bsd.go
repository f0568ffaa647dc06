//go:build darwin || freebsd

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// poller multiplexes every fd of the observer with kqueue(2). An EVFILT_USER
// event is the wake source: the os/signal goroutine triggers it so that a
// signal ends the current kevent wait.
type poller struct {
	fine    bool // kevent's timeout is a timespec: a wait keeps its ns
	kq      int
	raw     [maxPollEvents]unix.Kevent_t
	changes [2]unix.Kevent_t
	ts      unix.Timespec
}

const wakeIdent = 0x7661 // arbitrary, never a real fd in EVFILT_USER's namespace

func newPoller() (*poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, os.NewSyscallError("kqueue", err)
	}
	unix.CloseOnExec(kq)
	p := &poller{kq: kq, fine: true}
	ev := unix.Kevent_t{Ident: wakeIdent, Filter: unix.EVFILT_USER, Flags: unix.EV_ADD | unix.EV_CLEAR}
	p.changes[0] = ev
	if _, err := unix.Kevent(kq, p.changes[:1], nil, nil); err != nil {
		unix.Close(kq)
		return nil, os.NewSyscallError("kevent", err)
	}
	return p, nil
}

func (p *poller) ctl(fd int, filter int16, on bool, add bool) error {
	var flags uint16 = unix.EV_ADD
	if on {
		flags |= unix.EV_ENABLE
	} else {
		flags |= unix.EV_DISABLE
	}
	if !add && !on {
		flags = unix.EV_DISABLE
	}
	p.changes[0] = unix.Kevent_t{Ident: uint64(fd), Filter: filter, Flags: flags}
	_, err := unix.Kevent(p.kq, p.changes[:1], nil, nil)
	if err != nil {
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

func (p *poller) add(fd int, read, write bool) error {
	if err := p.ctl(fd, unix.EVFILT_READ, read, true); err != nil {
		return err
	}
	return p.ctl(fd, unix.EVFILT_WRITE, write, true)
}

func (p *poller) modify(fd int, read, write bool) error { return p.add(fd, read, write) }

// arm enables or disables fd's read filter, leaving it registered (the
// loop pauses only where coalesceEnabled, Linux; kept for the same shape).
func (p *poller) arm(fd int, on bool) error { return p.ctl(fd, unix.EVFILT_READ, on, false) }

func (p *poller) remove(fd int) error {
	p.changes[0] = unix.Kevent_t{Ident: uint64(fd), Filter: unix.EVFILT_READ, Flags: unix.EV_DELETE}
	p.changes[1] = unix.Kevent_t{Ident: uint64(fd), Filter: unix.EVFILT_WRITE, Flags: unix.EV_DELETE}
	unix.Kevent(p.kq, p.changes[:2], nil, nil)
	return nil
}

// wait blocks until an fd is ready or timeoutNs passes (negative: forever).
// kevent(2) takes a timespec, so the deadline keeps its nanoseconds.
func (p *poller) wait(out []pollEvent, timeoutNs int64) (int, error) {
	var tsp *unix.Timespec
	if timeoutNs >= 0 {
		p.ts = unix.NsecToTimespec(timeoutNs)
		tsp = &p.ts
	}
	n, err := unix.Kevent(p.kq, nil, p.raw[:min(len(out), len(p.raw))], tsp)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("kevent", err)
	}
	for i := 0; i < n; i++ {
		k := &p.raw[i]
		if k.Filter == unix.EVFILT_USER {
			out[i] = pollEvent{fd: -1, readable: true}
			continue
		}
		out[i] = pollEvent{
			fd:       int(k.Ident),
			readable: k.Filter == unix.EVFILT_READ,
			writable: k.Filter == unix.EVFILT_WRITE,
			hangup:   k.Flags&(unix.EV_EOF|unix.EV_ERROR) != 0,
		}
	}
	return n, nil
}

// wake triggers the EVFILT_USER event. Safe from any goroutine.
func (p *poller) wake() {
	ch := [1]unix.Kevent_t{{Ident: wakeIdent, Filter: unix.EVFILT_USER, Fflags: unix.NOTE_TRIGGER}}
	unix.Kevent(p.kq, ch[:], nil, nil)
}

func (p *poller) isWake(fd int) bool { return fd == -1 }

func (p *poller) drainWake() {}

func (p *poller) close() { unix.Close(p.kq) }
