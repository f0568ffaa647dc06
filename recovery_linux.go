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
// close-on-exec. A leaked pipe held open by a daemon that a recovery
// restarted would otherwise keep the observer's parent waiting for EOF.
func closeInheritedOnExec() error {
	names, err := readDirNames("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // the directory's own descriptor, already closed
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC); err != nil {
			return os.NewSyscallError("fcntl", err)
		}
	}
	return nil
}

// readDirNames lists a directory with getdents(2) (os.ReadDir's entries
// can stat themselves, see above).
func readDirNames(path string) ([]string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getdents", Path: path, Err: err}
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
