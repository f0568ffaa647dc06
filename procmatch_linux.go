//go:build linux

package main

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procIdentity holds what a new pid is matched to agent sections by
// (contract §9), besides its comm: the target of /proc/PID/exe and
// /proc/PID/cmdline, into buffers the observer owns.
type procIdentity struct {
	exe [4096]byte // PATH_MAX
	cmd [4096]byte // a longer command line is matched by its first 4 KiB
}

// identity reads the exe target (when needExe) and the cmdline (when
// needCmd) of pid. The cmdline's arguments are joined by single spaces,
// its trailing NUL dropped. What cannot be read (the process is gone, or
// belongs to another user and the observer is not root, or is a kernel
// thread) is empty, and then no exe or cmdline option holds.
func (p *procReader) identity(pid uint32, needExe, needCmd bool, id *procIdentity) (exe, cmd []byte) {
	atFdcwd := unix.AT_FDCWD
	if needExe {
		p.pathOf(pid, "exe")
		n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&p.path[0])),
			uintptr(unsafe.Pointer(&id.exe[0])), uintptr(len(id.exe)), 0, 0)
		if e == 0 {
			exe = id.exe[:n]
		}
	}
	if needCmd {
		p.pathOf(pid, "cmdline")
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&p.path[0])),
			uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		if e == 0 {
			total := 0
			for total < len(id.cmd) {
				n, err := unix.Read(int(fd), id.cmd[total:])
				if err == unix.EINTR {
					continue
				}
				if err != nil || n <= 0 {
					break
				}
				total += n
			}
			unix.Close(int(fd))
			for total > 0 && id.cmd[total-1] == 0 {
				total--
			}
			for i := 0; i < total; i++ {
				if id.cmd[i] == 0 {
					id.cmd[i] = ' '
				}
			}
			cmd = id.cmd[:total]
		}
	}
	return exe, cmd
}

// pathOf writes "/proc/<pid>/<name>\x00" into p.path.
func (p *procReader) pathOf(pid uint32, name string) {
	b := append(p.path[:0], "/proc/"...)
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, '/')
	b = append(b, name...)
	_ = append(b, 0)
}
