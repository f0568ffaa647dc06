//go:build linux

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// poller multiplexes every fd of the observer with epoll(7). A non-blocking
// eventfd(2) is the wake fd: the os/signal goroutine writes to it so that a
// signal ends the current epoll_wait.
type poller struct {
	epfd   int
	wakefd int
	raw    [maxPollEvents]unix.EpollEvent
	one    [8]byte
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

// remove unregisters fd; call it before closing fd.
func (p *poller) remove(fd int) error {
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil))
}

// wait blocks until an fd is ready or timeoutNs passes (negative: forever)
// and fills out. epoll_wait(2) counts in milliseconds, so the timeout is
// rounded up: a deadline is never fired early, at most 1 ms late.
func (p *poller) wait(out []pollEvent, timeoutNs int64) (int, error) {
	n, err := unix.EpollWait(p.epfd, p.raw[:min(len(out), len(p.raw))], epollMsec(timeoutNs))
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
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
