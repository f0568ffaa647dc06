//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The one reader of /proc. Every read goes into a buffer the caller owns,
// through a NUL-terminated path built in a fixed array: opening a path
// through unix.Open would allocate the C string on every call, and the
// observer reads /proc on the hot path (a new pid's start time and comm,
// liveness at a stall) and at every scrape (its own process_* metrics).

// atFdcwd is AT_FDCWD as a variable: the constant (-100) does not convert
// to uintptr.
var atFdcwd = unix.AT_FDCWD

// openCPath wraps openat(2) relative to the working directory for a
// NUL-terminated path.
func openCPath(cpath []byte, flags int) (int, unix.Errno) {
	for {
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&cpath[0])),
			uintptr(flags|unix.O_CLOEXEC), 0, 0, 0)
		if e != unix.EINTR {
			return int(fd), e
		}
	}
}

// procPathMax holds "/proc/4294967295/" and a file name of up to 46 bytes.
const procPathMax = 64

// procPath builds the NUL-terminated path /proc/<pid>/<name> in dst;
// pid 0, which no process has, stands for /proc/self.
func procPath(dst *[procPathMax]byte, pid uint32, name string) []byte {
	b := append(dst[:0], "/proc/"...)
	if pid == 0 {
		b = append(b, "self"...)
	} else {
		b = strconv.AppendUint(b, uint64(pid), 10)
	}
	b = append(b, '/')
	b = append(b, name...)
	return append(b, 0)
}

// readProcFile reads /proc/<pid>/<name> (pid 0: /proc/self) into buf and
// returns the byte count, or -1 when the file cannot be opened (most
// often: no such process). A file longer than buf is cut at len(buf).
func readProcFile(pid uint32, name string, buf []byte) int {
	var path [procPathMax]byte
	fd, e := openCPath(procPath(&path, pid, name), unix.O_RDONLY)
	if e != 0 {
		return -1
	}
	total := 0
	for total < len(buf) {
		n, err := unix.Read(fd, buf[total:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		total += n
	}
	unix.Close(fd)
	return total
}

// procDir walks the entries of a /proc directory with getdents64(2) into
// a buffer the caller owns.
type procDir struct {
	fd       int
	buf      []byte
	off, end int
}

// openProcDir opens /proc/<pid>/<name> (pid 0: /proc/self) to be walked
// with next, getdents64(2) filling buf.
func openProcDir(pid uint32, name string, buf []byte) (procDir, unix.Errno) {
	var path [procPathMax]byte
	fd, e := openCPath(procPath(&path, pid, name), unix.O_RDONLY|unix.O_DIRECTORY)
	if e != 0 {
		return procDir{fd: -1}, e
	}
	return procDir{fd: fd, buf: buf}, 0
}

// next returns the name of the next entry other than . and .., valid until
// the following call; ok is false at the end or on an error, err tells
// which.
func (d *procDir) next() (name []byte, ok bool, err error) {
	for {
		if d.off >= d.end {
			n, err := unix.Getdents(d.fd, d.buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return nil, false, err
			}
			d.off, d.end = 0, n
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8,
		// name NUL-terminated.
		if d.off+19 >= d.end {
			d.off = d.end
			continue
		}
		// Read by bytes: a caller's buffer need not be aligned, and MIPS
		// faults (SIGBUS) on an unaligned uint16 load.
		reclen := int(binary.NativeEndian.Uint16(d.buf[d.off+16:]))
		if reclen <= 19 || d.off+reclen > d.end {
			d.off = d.end
			continue
		}
		name := d.buf[d.off+19 : d.off+reclen]
		d.off += reclen
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if string(name) != "." && string(name) != ".." {
			return name, true, nil
		}
	}
}

func (d *procDir) close() { unix.Close(d.fd) }

// statField returns field n (n >= 3, numbered as in proc(5)) of a
// /proc/PID/stat text; ok is false when the text has fewer fields. comm
// (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
func statField(stat []byte, n int) (field []byte, ok bool) {
	i := bytes.LastIndexByte(stat, ')') + 2 // field 3 starts after ") "
	if i < 2 || i >= len(stat) {
		return nil, false
	}
	for f := 3; f < n; f++ {
		j := bytes.IndexByte(stat[i:], ' ')
		if j < 0 {
			return nil, false
		}
		i += j + 1
	}
	j := i
	for j < len(stat) && stat[j] != ' ' && stat[j] != '\n' {
		j++
	}
	return stat[i:j], true
}

// statUint returns field n of a /proc/PID/stat text as a number (its
// leading digits); ok is false when the text has fewer fields.
func statUint(stat []byte, n int) (v uint64, ok bool) {
	f, ok := statField(stat, n)
	for _, c := range f {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint64(c-'0')
	}
	return v, ok
}

// procReader reads the /proc/PID files the agent rules need into a buffer
// it owns.
type procReader struct {
	buf [1024]byte
}

// read fills p.buf with /proc/<pid>/<name>; see readProcFile.
func (p *procReader) read(pid uint32, name string) int {
	return readProcFile(pid, name, p.buf[:])
}

// statFields locates, in /proc/PID/stat, the state byte (field 3) and the
// start time (field 22, clock ticks since boot).
func statFields(stat []byte) (state byte, start uint64, ok bool) {
	f, ok := statField(stat, 3)
	if !ok || len(f) != 1 {
		return 0, 0, false
	}
	start, ok = statUint(stat, 22)
	return f[0], start, ok
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

// startAndComm reads /proc/PID/stat once for what a new process behind a
// pid is known by: its start time (0 if it cannot be read) and its comm
// (the process name: at most 15 bytes for a process, cut to 16 for a
// kernel thread's longer one), copied into dst. The kernel writes
// the comm of stat's field 2 with the function that writes /proc/PID/comm,
// unescaped, so this saves the open, read and close of a second file for
// every new agent.
func (p *procReader) startAndComm(pid uint32, dst *[16]byte) (start uint64, commLen uint8) {
	n := p.read(pid, "stat")
	if n <= 0 {
		return 0, 0
	}
	stat := p.buf[:n]
	_, start, _ = statFields(stat)
	if c, ok := statComm(stat); ok {
		commLen = uint8(copy(dst[:], c))
	}
	return start, commLen
}

// statComm returns field 2 of a /proc/PID/stat text, the comm without its
// parentheses: from the first '(' to the last ')', as a comm may hold both.
func statComm(stat []byte) (comm []byte, ok bool) {
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return nil, false
	}
	return stat[i+1 : j], true
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
