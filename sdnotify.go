//go:build unix

package main

import (
	"math"
	"os"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sdNotifier speaks the systemd notify protocol (sd_notify(3)): one
// datagram per message to the AF_UNIX socket named by NOTIFY_SOCKET.
//
// Everything that can allocate happens in newSdNotifier; send issues
// sendto(2) on a socket and an address that live as long as the notifier,
// so the event loop can call it on every watchdog deadline.
type sdNotifier struct {
	fd       int
	addr     unix.SockaddrUnix
	to       unix.Sockaddr // &addr, converted to the interface once, not per send
	watchdog time.Duration // WATCHDOG_USEC/2, or 0
}

// newSdNotifier reads NOTIFY_SOCKET (an absolute path, or a leading '@' for
// the Linux abstract namespace), WATCHDOG_USEC and WATCHDOG_PID. It returns
// (nil, nil) when NOTIFY_SOCKET is unset or empty: not started by systemd.
//
// The watchdog is requested only when WATCHDOG_USEC is set and WATCHDOG_PID,
// if set, is this process (sd_watchdog_enabled(3)): a service manager sets
// WATCHDOG_PID so that a child inheriting the environment does not believe
// it is the one being watched.
//
// It opens one SOCK_DGRAM socket, close-on-exec and non-blocking, kept for
// the process lifetime.
func newSdNotifier() (*sdNotifier, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil, nil
	}
	if err := checkNotifySocketName(name); err != nil {
		return nil, err
	}
	watchdog, err := sdWatchdogFromEnv(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	if err != nil {
		return nil, err
	}
	fd, err := newSocket(unix.AF_UNIX, unix.SOCK_DGRAM)
	if err != nil {
		err = os.NewSyscallError("socket", err)
		return nil, wrapf(err, "NOTIFY_SOCKET %s", name)
	}
	n := &sdNotifier{fd: fd, watchdog: watchdog}
	n.addr.Name = name
	n.to = &n.addr
	return n, nil
}

// checkNotifySocketName rejects what sendto would refuse later, so that a
// bad NOTIFY_SOCKET fails at start rather than at READY=1.
func checkNotifySocketName(name string) error {
	var raw unix.RawSockaddrUnix
	switch {
	case name[0] == '@':
		if runtime.GOOS != "linux" && runtime.GOOS != "android" {
			return errorf("NOTIFY_SOCKET %s: abstract socket names exist only on Linux", name)
		}
		if len(name) < 2 {
			return errorf("NOTIFY_SOCKET %s: empty abstract socket name", name)
		}
	case name[0] != '/':
		// systemd also knows vsock: addresses (for VMs); they are not
		// something a router daemon is started with.
		return errorf("NOTIFY_SOCKET %s: want an absolute path or an @abstract name", name)
	}
	// sun_path must hold the name and, for a path, its terminating NUL.
	if len(name) >= len(raw.Path) {
		return errorf("NOTIFY_SOCKET %s: name longer than %d bytes", name, len(raw.Path)-1)
	}
	return nil
}

// sdWatchdogFromEnv returns how often to send WATCHDOG=1: half of
// WATCHDOG_USEC as systemd.service(5) recommends, or 0 when no watchdog is
// requested from this pid.
func sdWatchdogFromEnv(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	u, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || u == 0 {
		return 0, errorf("WATCHDOG_USEC=%q: want a positive number of microseconds", usec)
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, errorf("WATCHDOG_PID=%q: want a process id", pid)
		}
		if p != self {
			return 0, nil
		}
	}
	if u > math.MaxInt64/uint64(time.Microsecond) {
		return math.MaxInt64 / 2, nil
	}
	return time.Duration(u) * time.Microsecond / 2, nil
}

// send sends one notification such as "READY=1", "WATCHDOG=1" or
// "STOPPING=1" with sendto(2). It never blocks: when the service manager's
// queue is full the error is EAGAIN, and the caller decides whether to retry
// at its next deadline. A nil notifier does nothing.
//
// The kernel attaches our credentials itself (the service manager's socket
// has SO_PASSCRED), which is what NotifyAccess=main checks.
func (n *sdNotifier) send(msg string) error {
	if n == nil {
		return nil
	}
	if n.fd < 0 {
		return os.ErrClosed
	}
	if msg == "" {
		return nil
	}
	// sendto only reads the buffer: viewing the string's bytes in place
	// avoids the copy (and the allocation) that []byte(msg) may cost.
	p := unsafe.Slice(unsafe.StringData(msg), len(msg))
	for {
		err := unix.Sendto(n.fd, p, 0, n.to)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("sendto", err)
		}
		return nil
	}
}

// watchdogInterval returns how often the loop should send WATCHDOG=1, or 0
// when systemd did not ask for it. A nil notifier returns 0.
func (n *sdNotifier) watchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// close closes the socket. It is safe to call more than once and on nil.
func (n *sdNotifier) close() {
	if n == nil || n.fd < 0 {
		return
	}
	unix.Close(n.fd)
	n.fd = -1
}
