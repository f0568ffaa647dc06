//go:build linux

package main

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// selfProc produces the process_* metrics with client_golang's names and
// meaning (its process collector reads the same files through
// prometheus/procfs):
//
//   - process_cpu_seconds_total: utime+stime of /proc/self/stat over
//     USER_HZ, which procfs takes to be 100;
//   - process_resident_memory_bytes: rss (pages) × the page size;
//   - process_virtual_memory_bytes: vsize;
//   - process_open_fds: the entries of /proc/self/fd (the descriptor that
//     reads the directory counts, as it does for procfs);
//   - process_max_fds: the soft RLIMIT_NOFILE ("Max open files" in
//     /proc/self/limits);
//   - process_start_time_seconds: btime of /proc/stat plus starttime over
//     USER_HZ.
//
// Reading them at scrape time allocates nothing: the paths are NUL
// terminated byte slices made once and the files are read into buffers
// owned here.
type selfProc struct {
	ok         bool
	startHunds int64 // process start, Unix time in hundredths of a second
	pageSize   uint64
	buf        [1024]byte
	dents      [4096]byte
	rlim       unix.Rlimit
}

// userHZ is USER_HZ, the unit of the times in /proc/PID/stat. The kernel
// fixes it at 100 on every architecture the observer runs on.
const userHZ = 100

// atFdcwd is AT_FDCWD as a variable: the constant (-100) does not convert
// to uintptr.
var atFdcwd = unix.AT_FDCWD

var (
	procSelfStat = []byte("/proc/self/stat\x00")
	procSelfFd   = []byte("/proc/self/fd\x00")
)

func (s *selfProc) init() error {
	s.pageSize = uint64(os.Getpagesize())
	stat, err := readFile("/proc/stat", 1<<20)
	if err != nil {
		return err
	}
	var btime int64 = -1
	for _, line := range bytes.Split(stat, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			btime, err = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return errors.New("/proc/stat: bad btime")
			}
		}
	}
	if btime < 0 {
		return errors.New("/proc/stat: no btime")
	}
	var f [selfStatFields]uint64
	if !s.readStat(&f) {
		return errors.New("/proc/self/stat: unreadable")
	}
	s.startHunds = btime*userHZ + int64(f[fStarttime])*(100/userHZ)
	s.ok = true
	return nil
}

// Fields of /proc/self/stat, numbered as in proc(5).
const (
	fUtime = iota
	fStime
	fStarttime
	fVsize
	fRss
	selfStatFields
)

var selfStatFieldNumbers = [selfStatFields]int{14, 15, 22, 23, 24}

// readFile reads a small /proc file into s.buf with openat(2) on a
// NUL-terminated path, returning the byte count or -1.
func (s *selfProc) readFile(path []byte, buf []byte) int {
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&path[0])),
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if e != 0 {
		return -1
	}
	total := 0
	for total < len(buf) {
		n, err := unix.Read(int(fd), buf[total:])
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

// readStat parses the numeric fields the metrics need; comm (field 2) may
// hold spaces and parentheses, so fields are counted from the last ')'.
func (s *selfProc) readStat(out *[selfStatFields]uint64) bool {
	n := s.readFile(procSelfStat, s.buf[:])
	if n <= 0 {
		return false
	}
	b := s.buf[:n]
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return false
	}
	field, want := 2, 0
	var v uint64
	inNum := false
	for i := end + 1; i <= len(b) && want < selfStatFields; i++ {
		if i == len(b) || b[i] == ' ' || b[i] == '\n' {
			if inNum && field == selfStatFieldNumbers[want] {
				out[want] = v
				want++
			}
			inNum, v = false, 0
			if i < len(b) && b[i] == ' ' {
				field++
			}
			continue
		}
		if c := b[i]; c >= '0' && c <= '9' {
			v = v*10 + uint64(c-'0')
			inNum = true
		}
	}
	return want == selfStatFields
}

// openFds counts the entries of /proc/self/fd with getdents64(2).
func (s *selfProc) openFds() (uint64, bool) {
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(&procSelfFd[0])),
		uintptr(unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC), 0, 0, 0)
	if e != 0 {
		return 0, false
	}
	defer unix.Close(int(fd))
	var count uint64
	for {
		n, err := unix.Getdents(int(fd), s.dents[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, false
		}
		if n <= 0 {
			return count, true
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off+19 < n; {
			reclen := int(*(*uint16)(unsafe.Pointer(&s.dents[off+16])))
			if reclen <= 0 {
				break
			}
			name := s.dents[off+19 : off+reclen]
			if !(name[0] == '.' && (name[1] == 0 || name[1] == '.' && name[2] == 0)) {
				count++
			}
			off += reclen
		}
	}
}

// The process_* families, in the order appendMetrics writes them.
const (
	famCPUSeconds = iota
	famResidentMemory
	famVirtualMemory
	famOpenFds
	famMaxFds
	famProcessStartTime
	processFamilyCount
)

var processFamilies = [processFamilyCount]family{
	famCPUSeconds:       {"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", ""},
	famResidentMemory:   {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", ""},
	famVirtualMemory:    {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", ""},
	famOpenFds:          {"process_open_fds", "gauge", "Number of open file descriptors.", ""},
	famMaxFds:           {"process_max_fds", "gauge", "Maximum number of open file descriptors.", ""},
	famProcessStartTime: {"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", ""},
}

// appendMetrics appends the process_* families; each is left out when its
// source cannot be read, as client_golang does.
func (s *selfProc) appendMetrics(b []byte) []byte {
	if !s.ok {
		return b
	}
	fs := &processFamilies
	var f [selfStatFields]uint64
	if s.readStat(&f) {
		b = appendDecimalSample(b, &fs[famCPUSeconds], int64(f[fUtime]+f[fStime])*(100/userHZ), 2)
		b = appendOnlySample(b, &fs[famResidentMemory], f[fRss]*s.pageSize)
		b = appendOnlySample(b, &fs[famVirtualMemory], f[fVsize])
	}
	if n, ok := s.openFds(); ok {
		b = appendOnlySample(b, &fs[famOpenFds], n)
	}
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &s.rlim) == nil {
		b = appendOnlySample(b, &fs[famMaxFds], s.rlim.Cur)
	}
	return appendDecimalSample(b, &fs[famProcessStartTime], s.startHunds, 2)
}
