//go:build linux

package main

import (
	"bytes"
	"errors"
	"os"
	"strconv"

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

// readStat reads the numeric fields the metrics need from /proc/self/stat.
func (s *selfProc) readStat(out *[selfStatFields]uint64) bool {
	n := readProcFile(0, "stat", s.buf[:])
	if n <= 0 {
		return false
	}
	for i, field := range selfStatFieldNumbers {
		v, ok := statUint(s.buf[:n], field)
		if !ok {
			return false
		}
		out[i] = v
	}
	return true
}

// openFds counts the entries of /proc/self/fd.
func (s *selfProc) openFds() (uint64, bool) {
	d, e := openProcDir(0, "fd", s.dents[:])
	if e != 0 {
		return 0, false
	}
	defer d.close()
	var count uint64
	for {
		_, ok, err := d.next()
		if !ok {
			return count, err == nil
		}
		count++
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
