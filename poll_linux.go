//go:build linux

package main

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poller multiplexes every fd of the observer with epoll(7). A non-blocking
// eventfd(2) is the wake fd: the os/signal goroutine writes to it so that a
// signal ends the current epoll_wait.
type poller struct {
	epfd   int
	wakefd int
	// fine: epoll_pwait2(2) (Linux 5.11) works here, so a wait keeps the
	// nanoseconds of its timeout; otherwise epoll_wait rounds to whole ms.
	fine bool
	raw  [maxPollEvents]unix.EpollEvent
	one  [8]byte
	ts   unix.Timespec
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &poller{epfd: epfd, wakefd: wfd}
	if err := p.add(wfd, true, false); err != nil {
		p.close()
		return nil, err
	}
	// ENOSYS before 5.11; a seccomp filter may say EPERM instead. Nothing
	// is ready yet but the wake fd may be; level-triggered, it stays so.
	_, errno := p.pwait2(1, 0)
	p.fine = errno == 0
	return p, nil
}

// epollBits asks for EPOLLRDHUP only with read interest: a metrics client
// that shut its write side while it still reads the response would
// otherwise report ready on every wait, level-triggered, and spin the loop.
func epollBits(read, write bool) uint32 {
	var ev uint32
	if read {
		ev |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if write {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// add registers fd, level-triggered, for the given interest.
func (p *poller) add(fd int, read, write bool) error {
	ev := unix.EpollEvent{Events: epollBits(read, write), Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev))
}

// modify changes the interest of a registered fd.
func (p *poller) modify(fd int, read, write bool) error {
	ev := unix.EpollEvent{Events: epollBits(read, write), Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev))
}

// arm turns fd's read interest on or off, leaving it registered. With it
// off, a wait does not end for fd (a coalescing pause waits so for
// everything but the VLP socket, coalesce.go).
func (p *poller) arm(fd int, on bool) error {
	var ev unix.EpollEvent
	ev.Fd = int32(fd)
	if on {
		ev.Events = epollBits(true, false)
	}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev))
}

// remove unregisters fd; call it before closing fd.
func (p *poller) remove(fd int) error {
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil))
}

// wait blocks until an fd is ready or timeoutNs passes (negative: forever)
// and fills out. epoll_pwait2(2) takes the timeout in ns; epoll_wait(2)
// counts in milliseconds, so there the timeout is rounded up: a deadline is
// never fired early, at most 1 ms late.
func (p *poller) wait(out []pollEvent, timeoutNs int64) (int, error) {
	room := min(len(out), len(p.raw))
	var n int
	var err error
	if p.fine {
		var errno unix.Errno
		n, errno = p.pwait2(room, timeoutNs)
		if errno != 0 {
			err = errno
		}
	} else {
		n, err = unix.EpollWait(p.epfd, p.raw[:room], epollMsec(timeoutNs))
	}
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		if p.fine {
			return 0, os.NewSyscallError("epoll_pwait2", err)
		}
		return 0, os.NewSyscallError("epoll_wait", err)
	}
	for i := 0; i < n; i++ {
		e := p.raw[i].Events
		out[i] = pollEvent{
			fd:       int(p.raw[i].Fd),
			readable: e&(unix.EPOLLIN|unix.EPOLLPRI) != 0,
			writable: e&unix.EPOLLOUT != 0,
			hangup:   e&(unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLRDHUP) != 0,
		}
	}
	return n, nil
}

// pwait2 wraps epoll_pwait2(2) with no signal mask: x/sys has only the
// number. A negative timeout passes no timespec: forever.
func (p *poller) pwait2(room int, timeoutNs int64) (int, unix.Errno) {
	var tsp uintptr
	if timeoutNs >= 0 {
		p.ts = unix.NsecToTimespec(timeoutNs)
		tsp = uintptr(unsafe.Pointer(&p.ts))
	}
	n, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.raw[0])), uintptr(room), tsp, 0, 0)
	return int(n), errno
}

// epollMsec converts a timeout in ns to epoll_wait's milliseconds, rounded
// up; negative means forever. The kernel takes an int: a longer timeout
// (over 24.8 days, e.g. a far --shutdown-after-secs on an idle observer)
// would wrap to a negative value, forever, so it is capped; the loop
// recomputes its timeout when the wait ends.
func epollMsec(timeoutNs int64) int {
	const maxMsec = 1<<31 - 1
	if timeoutNs < 0 {
		return -1
	}
	if timeoutNs > (maxMsec-1)*1_000_000 {
		return maxMsec
	}
	return int((timeoutNs + 999_999) / 1_000_000)
}

// wake makes a concurrent or the next wait return. Safe from any goroutine.
func (p *poller) wake() {
	var b = [8]byte{1}
	unix.Write(p.wakefd, b[:])
}

func (p *poller) isWake(fd int) bool { return fd == p.wakefd }

// drainWake resets the eventfd counter.
func (p *poller) drainWake() {
	unix.Read(p.wakefd, p.one[:])
}

func (p *poller) close() {
	unix.Close(p.wakefd)
	unix.Close(p.epfd)
}
