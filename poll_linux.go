//go:build linux

package main

import (
	"os"
	"runtime"
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
	ts   kernelTimespec
}

// kernelTimespec is the kernel's struct __kernel_timespec, which
// epoll_pwait2(2) reads on every architecture: two 64-bit fields.
// unix.Timespec has 32-bit fields on 386, arm and mips, where the kernel
// would read a timeout of 3 ms as 3,000,000 × 2³² seconds.
type kernelTimespec struct{ Sec, Nsec int64 }

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
	_, errno := p.pwait2(1, 0, false)
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

// setLoopProcs gives the observer a single P (observer.run), unless the
// environment sets GOMAXPROCS: a P whose held waits (wait) sysmon never
// retakes, and whose runtime.Gosched wakes no second thread. Measured at
// 4096 agents × 1 Hz: 209 instead of 378 context switches a second; at 40
// agents × 1 Hz, 267 instead of 2,439 (BENCHMARKS.md, "Session 7"). It is
// set even where it already is 1 (one CPU): an explicit setting also stops
// the runtime from raising it later when the CPU affinity or the cgroup's
// limit widens.
func setLoopProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

// wait blocks until an fd is ready or timeoutNs passes (negative: forever)
// and fills out. epoll_pwait2(2) takes the timeout in ns; epoll_wait(2)
// counts in milliseconds, so there the timeout is rounded up: a deadline is
// never fired early, at most 1 ms late.
//
// A held wait (timeoutNs at most heldWaitMax) is a raw syscall: the Go
// runtime does not see the loop enter it. A wait through syscall.Syscall
// tells the runtime the P may be taken: with no idle P (setLoopProcs) sysmon
// retakes it within a tick or two, and with one it retakes any wait older
// than 10 ms; either way a thread is woken for the handed-off P, the
// syscall's return wakes a deep-sleeping sysmon, and sysmon then polls
// every 20 µs for a millisecond and more (at 40 beats/s and two Ps, ~56
// sysmon wakeups a beat). A raw wait keeps the P and the runtime quiet;
// what the runtime asks in return is that its goroutine passes through the
// scheduler at least every 10 ms (else sysmon preempts it with a signal,
// which ends the wait with EINTR), and that no other goroutine needs the
// P meanwhile: the loop yields before every held wait that would outlast
// yieldInterval (observer.iterate), and a held wait is never longer than
// heldWaitMax. Longer waits (an idle loop, slow agents) go through
// syscall.Syscall, so the P is free for the signal goroutine and the
// logger while the loop sleeps, and an idle observer never wakes.
func (p *poller) wait(out []pollEvent, timeoutNs int64, held bool) (int, error) {
	n, errno := p.waitRaw(min(len(out), len(p.raw)), timeoutNs, held)
	if errno != 0 {
		if errno == unix.EINTR {
			return 0, nil
		}
		if p.fine {
			return 0, os.NewSyscallError("epoll_pwait2", errno)
		}
		return 0, os.NewSyscallError("epoll_wait", errno)
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

// waitRaw is wait's syscall, into p.raw[:room].
func (p *poller) waitRaw(room int, timeoutNs int64, held bool) (int, unix.Errno) {
	held = held && timeoutNs >= 0 && timeoutNs <= heldWaitMax
	switch {
	case p.fine:
		return p.pwait2(room, timeoutNs, held)
	case held:
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.raw[0])), uintptr(room), uintptr(epollMsec(timeoutNs)), 0, 0)
		return int(n), errno
	}
	n, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.raw[0])), uintptr(room), uintptr(epollMsec(timeoutNs)), 0, 0)
	return int(n), errno
}

// pwait2 wraps epoll_pwait2(2) with no signal mask: x/sys has only the
// number. A negative timeout passes no timespec: forever. held: a raw
// syscall (wait).
func (p *poller) pwait2(room int, timeoutNs int64, held bool) (int, unix.Errno) {
	var tsp uintptr
	if timeoutNs >= 0 {
		p.ts = kernelTimespec{Sec: timeoutNs / 1_000_000_000, Nsec: timeoutNs % 1_000_000_000}
		tsp = uintptr(unsafe.Pointer(&p.ts))
	}
	if held {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.raw[0])), uintptr(room), tsp, 0, 0)
		return int(n), errno
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
