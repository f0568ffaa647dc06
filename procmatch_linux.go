//go:build linux

package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// procIdentity holds what a new pid is matched to agent sections by
// (contract §9), besides its comm: the target of /proc/PID/exe and
// /proc/PID/cmdline (its first 1 KiB, in the reader's buffer).
type procIdentity struct {
	exe [4096]byte // PATH_MAX
}

// identity reads the exe target (when needExe) and the cmdline (when
// needCmd) of pid. The cmdline's arguments are joined by single spaces,
// its trailing NUL dropped. What cannot be read (the process is gone, or
// belongs to another user and the observer is not root, or is a kernel
// thread) is empty, and then no exe or cmdline option holds.
func (p *procReader) identity(pid uint32, needExe, needCmd bool, id *procIdentity) (exe, cmd []byte) {
	if needExe {
		var path [procPathMax]byte
		c := procPath(&path, pid, "exe")
		n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&c[0])),
			uintptr(unsafe.Pointer(&id.exe[0])), uintptr(len(id.exe)), 0, 0)
		if e == 0 {
			exe = id.exe[:n]
		}
	}
	if needCmd {
		if n := p.read(pid, "cmdline"); n >= 0 {
			for n > 0 && p.buf[n-1] == 0 {
				n--
			}
			for i := 0; i < n; i++ {
				if p.buf[i] == 0 {
					p.buf[i] = ' '
				}
			}
			cmd = p.buf[:n]
		}
	}
	return exe, cmd
}
