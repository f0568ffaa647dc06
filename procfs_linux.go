//go:build linux

package main

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procReader reads /proc/PID files into buffers it owns: opening a path
// through unix.Open would allocate the C string on every call.
type procReader struct {
	path [64]byte
	buf  [1024]byte
}

// read fills p.buf with /proc/<pid>/<name> and returns the byte count, or
// -1 when the file cannot be read (most often: no such process).
func (p *procReader) read(pid uint32, name string) int {
	b := append(p.path[:0], "/proc/"...)
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, '/')
	b = append(b, name...)
	b = append(b, 0)
	atFdcwd := unix.AT_FDCWD
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&p.path[0])),
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if e != 0 {
		return -1
	}
	total := 0
	for total < len(p.buf) {
		n, err := unix.Read(int(fd), p.buf[total:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		total += n
	}
	unix.Close(int(fd))
	return total
}

// statFields locates, in /proc/PID/stat, the state byte (field 3) and the
// start time (field 22, clock ticks since boot). comm (field 2) may hold
// spaces and parentheses, so fields are counted from the last ')'.
func statFields(stat []byte) (state byte, start uint64, ok bool) {
	end := -1
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			end = i
			break
		}
	}
	if end < 0 || end+3 >= len(stat) {
		return 0, 0, false
	}
	state = stat[end+2]
	field := 3
	i := end + 2
	for i < len(stat) && field < 22 {
		if stat[i] == ' ' {
			field++
		}
		i++
	}
	if field != 22 {
		return state, 0, false
	}
	for ; i < len(stat) && stat[i] >= '0' && stat[i] <= '9'; i++ {
		start = start*10 + uint64(stat[i]-'0')
	}
	return state, start, true
}

// startTime returns the start time of pid, 0 if it cannot be read. Two
// processes that share a pid over time differ in it.
func (p *procReader) startTime(pid uint32) uint64 {
	n := p.read(pid, "stat")
	if n <= 0 {
		return 0
	}
	_, st, _ := statFields(p.buf[:n])
	return st
}

// alive reports whether pid names a live process: it exists and is not a
// zombie (a crashed agent its parent has not reaped yet is dead for us).
// When /proc/PID/stat cannot be read (no such process, but also /proc not
// mounted, hidepid, or out of descriptors), kill(pid, 0) decides: the
// process exists if it may be signalled or if that is merely forbidden.
func (p *procReader) alive(pid uint32) bool {
	n := p.read(pid, "stat")
	if n <= 0 {
		err := unix.Kill(int(pid), 0)
		return err == nil || err == unix.EPERM
	}
	state, _, ok := statFields(p.buf[:n])
	return !ok || (state != 'Z' && state != 'X' && state != 'x')
}

// comm copies /proc/PID/comm (the process name, at most 15 bytes) into dst.
func (p *procReader) comm(pid uint32, dst *[16]byte) uint8 {
	n := p.read(pid, "comm")
	if n <= 0 {
		return 0
	}
	for n > 0 && (p.buf[n-1] == '\n' || p.buf[n-1] == 0) {
		n--
	}
	return uint8(copy(dst[:], p.buf[:n]))
}

// innerPid returns the pid that pid has in its innermost pid namespace: the
// last number of the NSpid line of /proc/PID/status (Linux 4.1 and later),
// which the agent of a container or jail knows as its own pid. ok is false
// when the line cannot be read or lies past the first buffer of the file.
func (p *procReader) innerPid(pid uint32) (inner uint32, ok bool) {
	n := p.read(pid, "status")
	if n <= 0 {
		return 0, false
	}
	return nsPidInnermost(p.buf[:n])
}

// nsPidInnermost finds the line "NSpid:\t<pid>\t<pid>…" in a
// /proc/PID/status text and returns its last pid.
func nsPidInnermost(status []byte) (uint32, bool) {
	const key = "NSpid:"
	for i := 0; i+len(key) <= len(status); {
		if string(status[i:i+len(key)]) == key {
			var last, cur uint64
			digits, seen := false, false
			for j := i + len(key); j < len(status) && status[j] != '\n'; j++ {
				c := status[j]
				switch {
				case c >= '0' && c <= '9':
					cur = cur*10 + uint64(c-'0')
					if cur > 1<<32-1 {
						return 0, false
					}
					digits = true
				case c == ' ' || c == '\t':
					if digits {
						last, seen, cur, digits = cur, true, 0, false
					}
				default:
					return 0, false
				}
			}
			if digits {
				last, seen = cur, true
			}
			return uint32(last), seen
		}
		for i < len(status) && status[i] != '\n' {
			i++
		}
		i++
	}
	return 0, false
}
