//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package main

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// poller multiplexes every fd of the observer with kqueue(2). A wake source
// lets the os/signal goroutine end the current kevent wait: an EVFILT_USER
// event where the system has one (poll_kqueue_user.go), a pipe on NetBSD
// and OpenBSD (poll_kqueue_pipe.go), as in the Go runtime's netpoller.
// Kevent_t's field types differ between the systems (and between 32- and
// 64-bit ones), so events are filled in by unix.SetKevent.
type poller struct {
	fine    bool // kevent's timeout is a timespec: a wait keeps its ns
	kq      int
	raw     [maxPollEvents]unix.Kevent_t
	changes [2]unix.Kevent_t
	ts      unix.Timespec
	wakeFd  [2]int // the wake pipe's read and write ends, where there is one
}

func newPoller() (*poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, os.NewSyscallError("kqueue", err)
	}
	unix.CloseOnExec(kq)
	p := &poller{kq: kq, fine: true, wakeFd: [2]int{-1, -1}}
	if err := p.addWake(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *poller) ctl(fd int, filter int, on bool, add bool) error {
	flags := unix.EV_ADD
	if on {
		flags |= unix.EV_ENABLE
	} else {
		flags |= unix.EV_DISABLE
	}
	if !add && !on {
		flags = unix.EV_DISABLE
	}
	p.changes[0] = unix.Kevent_t{}
	unix.SetKevent(&p.changes[0], fd, filter, flags)
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
	p.changes = [2]unix.Kevent_t{}
	unix.SetKevent(&p.changes[0], fd, unix.EVFILT_READ, unix.EV_DELETE)
	unix.SetKevent(&p.changes[1], fd, unix.EVFILT_WRITE, unix.EV_DELETE)
	unix.Kevent(p.kq, p.changes[:2], nil, nil)
	return nil
}

// setLoopProcs gives the observer at least two Ps (observer.run), unless
// the environment sets GOMAXPROCS. The held waits of Linux's poller are not
// built here, so a wait goes through syscall.Syscall, and with a single P
// sysmon would retake the P from every wait that lasts a tick: a second P
// costs nothing while idle.
func setLoopProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
}

// wait blocks until an fd is ready or timeoutNs passes (negative: forever).
// kevent(2) takes a timespec, so the deadline keeps its nanoseconds; it is
// capped by kqueueTimeoutNs. held is Linux's (poll_linux.go); here every
// wait is one the runtime sees.
func (p *poller) wait(out []pollEvent, timeoutNs int64, held bool) (int, error) {
	var tsp *unix.Timespec
	if timeoutNs >= 0 {
		p.ts = unix.NsecToTimespec(kqueueTimeoutNs(timeoutNs))
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
		if p.isWakeEvent(k) {
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

func (p *poller) isWake(fd int) bool { return fd == -1 }

func (p *poller) close() {
	unix.Close(p.kq)
	for _, fd := range p.wakeFd {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
