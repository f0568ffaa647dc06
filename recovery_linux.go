//go:build linux

package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pidfdOpen wraps pidfd_open(2) (Linux 5.3): an fd, close-on-exec, that
// polls readable once the process has exited.
func pidfdOpen(pid int) (int, error) {
	for {
		fd, err := unix.PidfdOpen(pid, 0)
		if err == nil {
			return fd, nil
		}
		if !retryable(err) {
			return -1, os.NewSyscallError("pidfd_open", err)
		}
	}
}

// pidfdWorks reports whether this kernel has pidfd_open(2). Routers often
// run 4.x kernels, which answer ENOSYS; seccomp filters may answer EPERM.
// Either way children are then reaped on SIGCHLD.
func pidfdWorks() bool {
	fd, err := pidfdOpen(os.Getpid())
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// closeInheritedOnExec marks close-on-exec every descriptor above stderr
// that the observer inherited without the flag (whatever started it may
// leak a pipe or a lock file), so that recovery children get stdin, stdout
// and stderr only. Every descriptor the observer opens itself is already
// close-on-exec, the one that reads /proc/self/fd included. A leaked pipe
// held open by a daemon that a recovery restarted would otherwise keep the
// observer's parent waiting for EOF.
func closeInheritedOnExec() error {
	var buf [4096]byte
	d, e := openProcDir(0, "fd", buf[:])
	if e != 0 {
		return &os.PathError{Op: "open", Path: "/proc/self/fd", Err: e}
	}
	defer d.close()
	for {
		name, ok, err := d.next()
		if !ok {
			if err != nil {
				return &os.PathError{Op: "getdents", Path: "/proc/self/fd", Err: err}
			}
			return nil
		}
		fd, err := strconv.Atoi(string(name))
		if err != nil || fd <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC); err != nil {
			return os.NewSyscallError("fcntl", err)
		}
	}
}
